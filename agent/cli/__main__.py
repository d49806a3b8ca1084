"""`python -m ftagent.agent.cli ...` runs the command line."""

from ftagent.agent.cli.main import main

main()
