"""The training config: its typed model (`train_config`), the checks beyond types
(`check`), why each default has its value (`why`), and translation from and to other
tools: `translate` reads a foreign file and picks the translator (`llamafactory`,
`axolotl`, `openai_jobs`), which share their error and result types in `imported`.
"""
