"""Screens of the terminal app: the main chat screen and its dialogs."""
