"""`python -m pretrain ...` (what `accelerate launch -m pretrain train RECIPE` runs)."""

import sys

from pretrain.cli import main

sys.exit(main())
