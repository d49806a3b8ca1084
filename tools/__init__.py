"""The real tools behind ftagent: usable on their own, with no agent or UI imported."""
