"""Training: the recipe that runs in its own process (`python -m ftagent.tools.train CONFIG`),
and what it needs: model loading, the loss, attention for padding-free batches, checkpoints,
resume, sanity checks, the out-of-memory back-off, metrics, multi-process launch, the
pre-flight before a run and the job that launches and follows it.
"""
