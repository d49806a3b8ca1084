"""Thin workflow nodes: read state, call tools, return updates."""
