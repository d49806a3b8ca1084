"""A stop asked of the running workflow's nodes.

LangGraph runs a node in a worker thread when the driver streams custom events, so a
Ctrl-C (or the SIGTERM a fine-tuning server's worker turns into one) reaches the driver's
thread, not the node's, and LangGraph then waits for the node before it lets the interrupt
out. The driver's signal handler sets this event at once; a node that waits on something
outside the process (a provider's job) watches it and cleans up (cancels the job), and the
interrupt goes on."""

from __future__ import annotations

import threading

STOP_REQUESTED = threading.Event()
