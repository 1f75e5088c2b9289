"""`python -m pretrain ...` (what `accelerate launch -m pretrain train RECIPE` runs)."""

import sys

from pretrain.cli import main
from pretrain.core.dist import end_launched_rank
from pretrain.core.launcher import under_launcher
from pretrain.core.lifetime import die_with_parent, take_expected_parent

if under_launcher():
    # torchrun starts each rank in a session of its own: killing the launcher's process group left the ranks
    # training to the end (and holding the run lock); the kernel now ends a rank with its launcher
    die_with_parent(take_expected_parent())
code = main()
if under_launcher():
    end_launched_rank(code)  # a launched rank ends here (see its docstring); a plain process exits normally
sys.exit(code)
