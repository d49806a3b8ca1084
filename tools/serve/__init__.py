"""The OpenAI-compatible HTTP server: the FastAPI app, its request and response shapes,
and the continuous-batching engine that owns the model.
"""
