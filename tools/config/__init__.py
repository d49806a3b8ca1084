"""The training config: its typed model (`train_config`), the checks beyond types
(`check`), why each default has its value (`why`), and translation from and to other
tools (`translate` for LLaMA-Factory and Axolotl, `openai_jobs` for OpenAI fine-tuning jobs).
"""
