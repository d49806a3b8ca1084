"""Training: the recipe that runs in its own process (`python -m ftagent.tools.train CONFIG`,
`recipe`), and what it needs: model loading (`model`), the loss, attention for
padding-free batches, checkpoints, resume, sanity checks, the out-of-memory back-off
(`oom`), metrics and the finished attempt's `summary`, multi-process launch (`launch`), the
job that launches and follows it (`jobs`), and the pre-flight before a run (`preflight`,
joining `environment_checks`, `capacity_checks` and `file_checks`).
"""
