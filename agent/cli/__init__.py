"""The `ftagent` command line: one module per command family, `main` dispatches."""
