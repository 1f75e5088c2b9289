"""Evaluation: lm-eval on the live model during training and on saved checkpoints.

- `LoopEvaluator` — in-loop, every `eval.every_fraction` (loop.py)
- `run_eval_command` — `pretrain eval CHECKPOINT|OUTPUT_DIR` (command.py)
- `summarize_run` — table + learning-curve plot over a run's evaluations (report.py)
- `benchmarks` / `builtin_tasks` / `task_yaml` — the offline tasks
"""

from pretrain.evaluation.command import run_eval_command
from pretrain.evaluation.loop import LoopEvaluator
from pretrain.evaluation.report import summarize_run

__all__ = ["LoopEvaluator", "run_eval_command", "summarize_run"]
