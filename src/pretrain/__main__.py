"""`python -m pretrain ...` (what `accelerate launch -m pretrain train RECIPE` runs)."""

import sys

from pretrain.cli import main
from pretrain.core.dist import end_launched_rank
from pretrain.core.launcher import under_launcher

code = main()
if under_launcher():
    end_launched_rank(code)  # a launched rank ends here (see its docstring); a plain process exits normally
sys.exit(code)
