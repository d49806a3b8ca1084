"""`python -m ftagent.tools.serve MODEL_DIR ...`: the server in its own process."""

from ftagent.tools.serve.app import main

main()
