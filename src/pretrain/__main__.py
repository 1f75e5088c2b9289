"""`python -m pretrain ...` (what `accelerate launch -m pretrain train RECIPE` runs)."""

import sys

from pretrain.cli import main
from pretrain.core.dist import end_launched_rank

code = main()
end_launched_rank(code)  # a launched rank ends here (see its docstring); a plain process goes on to exit
sys.exit(code)
