"""Measurements of the whole system (scenario tables, quality, benchmarks)."""
