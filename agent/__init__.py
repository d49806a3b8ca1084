"""The ftagent workflow engine: LangGraph graph, state, nodes, gates and run registry."""
