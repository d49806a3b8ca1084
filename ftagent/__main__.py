"""`python -m ftagent ...` runs the command line."""

from ftagent.launcher import main

main()
