"""The real tools behind ftagent, usable on their own: no agent, LangGraph or UI imported.

One package per workflow stage (`plan/`, `data/`, `config/`, `train/`, `evaluate/`,
`deploy/`, `serve/`), the bundled data (`bundled/`), and a few shared modules: models,
hardware, the model registry, task kinds, chat templates, paths, atomic writes.
"""
