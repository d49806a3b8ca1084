"""Deployment: merge an adapter (and verify the merge), write the model card, export GGUF
with an Ollama Modelfile, and prove a served model answers a real OpenAI client.
"""
