"""`python -m ftagent ...` runs the command line."""

from ftagent.agent.cli.main import main

main()
