"""A teacher model writes answers and examples: distillation (answers for prompt-only
data), synthetic data (new examples from a task and a few seeds) and augmentation (more
examples where labels fall short). Any OpenAI-compatible endpoint or a local model folder;
every request goes through one on-disk cache, so a killed or repeated run never pays twice.
Knows nothing of the workflow: data_prep and the CLI call it."""
