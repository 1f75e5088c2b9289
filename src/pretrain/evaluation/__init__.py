"""Evaluation: lm-eval on the live model during training and on saved checkpoints.

- `LoopEvaluator` — in-loop, every `eval.every_fraction` (loop.py)
- `run_eval_command` — `pretrain eval CHECKPOINT|OUTPUT_DIR` (command.py)
- `summarize_run` — table + learning-curve plot over a run's evaluations (report.py)
- `EvalRecord` — the `evals/step-*.json` record, written and read in one place (records.py)
- `benchmarks` / `builtin_tasks` / `task_yaml` — the offline tasks
"""
