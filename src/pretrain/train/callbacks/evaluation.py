"""In-loop evaluation: the recipe's eval tasks at each `eval.every_fraction` of training.

The evaluator must not consume the training RNG streams (so evaluating cannot change the trajectory):
it runs inside `preserved_rng`. Every rank calls it: the data-parallel ranks split the documents, tensor-parallel
peers score theirs together; rank 0 writes.
"""

from __future__ import annotations

from pretrain.core.progress import get_logger
from pretrain.evaluation.loop import LoopEvaluator
from pretrain.evaluation.records import read_eval_records
from pretrain.evaluation.regressions import find_regressions
from pretrain.train.callbacks.base import Callback, StepOutput, fraction_steps
from pretrain.train.metrics import MetricsLog
from pretrain.train.rng import preserved_rng
from pretrain.train.setup import TrainSetup
from pretrain.train.state import TrainState

log = get_logger("pretrain.train")


class InLoopEvaluation(Callback):
    def __init__(self, setup: TrainSetup, metrics: MetricsLog, evaluator: LoopEvaluator):
        self.setup, self.metrics, self.evaluator = setup, metrics, evaluator
        self.steps = fraction_steps(setup.total_steps, setup.recipe.eval.every_fraction, None)

    def on_train_start(self, state: TrainState) -> None:
        # load the tasks before the first step: a broken task stops the run before any compute is spent
        if not any(step > state.step for step in self.steps):
            return  # resumed at the end: no evaluation left to run
        self.evaluator.prepare()
        if self.evaluator.setup_seconds and self.setup.accelerator.is_main_process:
            log.info(
                "eval tasks %s loaded in %.1f s",
                ", ".join(self.evaluator.tasks),
                self.evaluator.setup_seconds,
            )

    def on_step_end(self, state: TrainState, out: StepOutput) -> None:
        if state.step not in self.steps:
            return
        s = self.setup
        with preserved_rng():
            results = self.evaluator(
                s.accelerator.unwrap_model(s.model), step=state.step, tokens_seen=state.tokens_seen
            )
        s.model.train()
        if results:
            self.metrics.log_eval(state.step, state.tokens_seen, results)
        if s.accelerator.is_main_process:  # a score worse than the last checkpoint's beyond its noise
            for regression in find_regressions(read_eval_records(s.recipe.layout)):
                if regression.step == state.step:
                    log.warning("step %d: evaluation regression: %s", state.step, regression.describe())
