"""What a run says when it stops, in one place for the three front ends.

`Outcome` is where a drive stopped, with the facts every front end shows (the waiting
gate's question, the scores, what to type next); `chat_text()` and `markdown()` render it
for the chat and the terminal app, and the command line draws the same facts as rich
tables (`agent/cli/console.py`). The one-line summary of each
finished node and the metric order of a base-vs-tuned table live here too, so a new
metric or node is described once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Base-vs-tuned metrics in the order every table shows them.
METRICS = ("accuracy", "macro_f1", "exact_match", "rouge_l", "chrf", "json_compliance",
           "answer_words", "loss", "perplexity", "refusal_rate", "over_refusal_rate",
           "arc_accuracy")

NODE_DONE = {
    "planner": lambda e: f"plan: {e.get('method', '?').upper()} for a {e.get('task_type')} task",
    "data_prep": lambda e: f"data: {e.get('kept')} examples kept, {e.get('dropped')} dropped",
    "config": lambda e: (
        f"config: attempt {e.get('attempt')}, {e.get('epochs')} epochs, lr {e.get('learning_rate')}"
    ),
    "trainer": lambda e: f"trained {e.get('steps')} steps, mean loss {e.get('train_loss', 0):.4f}"
    + (f": {e['model']}" if e.get("model") else ""),
    "tester": lambda e: e.get("summary", "evaluated"),
    "deployer": lambda e: (f"recorded {e['model']} and wrote its card" if e.get("model")
                           else "merged model loads and answers" if e.get("ok")
                           else "merge check failed"),
}


def node_summary(event: dict) -> str:
    """One line for a `node_finished` event; empty when a summary field is missing (the
    node's name then says enough)."""
    render = NODE_DONE.get(event.get("node", ""))
    try:
        return render(event) if render else ""
    except (TypeError, ValueError):
        return ""


@dataclass
class Outcome:
    """Where a drive stopped (agent.service.session.drive returns one), with the facts
    every front end shows."""

    status: str  # done | waiting | rejected | failed
    run_id: str
    run_dir: Path
    gate: str | None = None
    request: dict | None = None
    error: str | None = None
    values: dict = field(default_factory=dict)  # the graph's state when it stopped
    unmet: str = ""  # waiting: the policy rule that did not hold, if a policy file decided

    def score_line(self) -> str:
        """'accuracy: base 0.080 -> tuned 0.880.' or '' before an evaluation."""
        ev = self.values.get("eval_report") or {}
        m = ev.get("primary_metric")
        base, tuned = (ev.get("base") or {}).get(m), (ev.get("tuned") or {}).get(m)
        if m is None or base is None or tuned is None:
            return ""
        return f"{m}: base {base:.3f} -> tuned {tuned:.3f}."

    def next_commands(self) -> list[str]:
        """What to type next at a terminal to continue this run."""
        if self.status == "waiting":
            return [f"ftagent resume {self.run_id} --approve {self.gate}",
                    f"ftagent resume {self.run_id} --reject {self.gate} --reason '...'"]
        if self.status == "failed":
            return [f"ftagent resume {self.run_id}"]
        return []


def chat_text(o: Outcome) -> str:
    """The chat's reply when a drive returns: short, with what to say next."""
    if o.status == "waiting":
        r = o.request or {}
        mark = "passed" if r.get("passed") else "FAILED"
        return (f"Waiting at gate **{r.get('gate')}** ({r.get('title')}; automatic check "
                f"{mark}).\n\n{r.get('summary', '')}\n\n{r.get('question', '')} Say "
                "\"approve\", \"reject because ...\", or change a setting.")
    if o.status == "failed":
        return f"The run failed: {o.error}. Fix it and say \"resume\"."
    if o.status == "rejected":
        return "The run stopped (rejected)."
    text = f"Run {o.run_id} is done."
    if score := o.score_line():
        text += f" {score}"
    merged = (o.values.get("deployment") or {}).get("merged")
    if merged:
        text += f" Merged model: {merged}."
    return text


def comparison_markdown(report: dict) -> str:
    """Base vs tuned on the held-out split, the metrics the run computed."""
    lines = [f"**Held-out test split ({report.get('n_test')} examples): base vs tuned**", "",
             "| metric | base | tuned |", "|---|---:|---:|"]
    for name in METRICS:
        b, t = (report.get("base") or {}).get(name), (report.get("tuned") or {}).get(name)
        if b is None and t is None:
            continue
        lines.append(f"| {name} | {_fmt(b)} | {_fmt(t)} |")
    return "\n".join(lines)


def markdown(o: Outcome) -> str:
    """The terminal app's report when a run ends done, rejected or failed."""
    parts = [f"## Run {o.status}"]
    if o.values.get("eval_report"):
        parts.append(comparison_markdown(o.values["eval_report"]))
    verdict = o.values.get("verdict") or {}
    if verdict.get("summary"):
        parts.append(keep_lines(verdict["summary"]))
    d = o.values.get("deployment") or {}
    if d.get("merged"):
        said = f"answered {d.get('answer')!r}" if d.get("ok") else f"failed: {d.get('error')}"
        parts.append(f"Merged model: `{d['merged']}` ({said})  \nAdapter: `{d.get('adapter')}`")
    parts.append(f"Run folder: `{o.run_dir}`")
    return "\n\n".join(parts)


def keep_lines(text: str) -> str:
    """Markdown that keeps the engine's line breaks (summaries are one fact per line)."""
    return "  \n".join(text.splitlines())


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
