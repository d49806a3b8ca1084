"""Evaluation: base vs tuned on held-out data, and what the numbers mean.

`request.run_evaluation` is the one entry (the tester, `ftagent eval` and the app's /eval):
it runs `compare.evaluate` (answer loss via `likelihood`, greedy answers via `generation`,
task scores via `metrics`, pairs via `preference`, the LLM judge via `judge`), the bundled
probes (`probes` loads them, `refusal` detects refusals, `multiple_choice` scores ARC,
`probe_verdicts` holds the safety limits and checks), then `verdict` against the plan's
targets. `diagnose` is the one place a run is judged over- or underfitted and what to
change, with one set of thresholds.
"""
