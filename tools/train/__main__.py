"""`python -m ftagent.tools.train CONFIG`: the training recipe in its own process."""

import sys

from ftagent.tools.train.recipe import main

sys.exit(main())
