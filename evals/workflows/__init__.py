"""The whole workflow, headless with default decisions, on the shared datasets: where each
run ends and why (`python -m evals.workflows`; see run.py)."""
