"""The service layer the CLI, the terminal app and the chat all call: creating, resuming
and driving runs, deciding gates, evaluating two models and describing a run's outcome.
"""
