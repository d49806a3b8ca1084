"""Fine-tuning knowledge as Markdown, one topic a file, one answer a `## ` section (read by
agent.chat.knowledge). A package so that setuptools ships the files with `prompts`."""
