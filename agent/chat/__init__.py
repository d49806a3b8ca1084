"""The chat agent: free text in, the agent's own tools and answers out, on any
OpenAI-compatible LLM, the bundled model, or none (the intent parser and the knowledge base).
"""
