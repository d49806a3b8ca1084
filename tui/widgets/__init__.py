"""Widgets of the terminal app: chat log, command input, steps panel, training panel."""
