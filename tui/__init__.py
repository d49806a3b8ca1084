"""The Textual terminal app (chat, slash commands, gates, live training).

It drives the same engine as headless runs (`agent.service.session`) and is built in its own
modules; nothing in `agent/` or `tools/` imports it.
"""
