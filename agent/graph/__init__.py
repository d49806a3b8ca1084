"""The workflow graph: its state, the LangGraph state machine (`workflow`), the six
quality gates, the routing after each gate and the nodes, one module each.
"""
