"""The ftagent engine, split by job:

- `graph/`   the LangGraph workflow: state, graph, gates, routing, nodes (one per step);
- `service/` what the CLI, the terminal app and the chat share: runs, gate decisions,
             evaluation, outcome text;
- `cli/`     the `ftagent` command line;
- `chat/`    the conversational agent and its tools.

The agent imports no Textual; the graph imports neither the CLI nor the chat.
"""
