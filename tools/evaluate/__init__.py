"""Evaluation: base vs tuned on held-out data (`compare`), the task metrics, greedy
generation, the LLM judge, preference pairs, the safety and regression probes, the verdict
against the plan's targets, and the diagnosis of a missed target with what to change.
"""
