"""`python -m pretrain.cli ARGS`: the same as `pretrain ARGS`."""

import sys

from pretrain.cli import main

sys.exit(main())
