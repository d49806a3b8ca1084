"""Fine-tuning on a provider's API (OpenAI, or any server that speaks OpenAI's fine-tuning
API, `ftagent serve --fine-tuning` included): settings and price table, the provider's chat
JSONL, the job (upload, create, follow, cancel) and evaluation through the chat endpoint.
Plain functions over the official `openai` client; nothing here knows of the workflow."""
