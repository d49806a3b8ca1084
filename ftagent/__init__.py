"""ftagent: from "I want a model that does X" to a fine-tuned, evaluated, served model.

The installed package is `ftagent`; in the repository its parts are the top-level folders
the design asks for, mapped into this namespace by `pyproject.toml` (setuptools package-dir):

- `ftagent.agent`   (agent/)   the workflow graph, the service layer, the CLI and the chat;
- `ftagent.tools`   (tools/)   the real tools, one package per workflow stage;
- `ftagent.tui`     (tui/)     the Textual terminal app;
- `ftagent.prompts` (prompts/) prompt templates, model registry and the knowledge base.

So an installed ftagent claims no generic top-level name such as `tools` or `agent`.
"""

__version__ = "0.1.0"
