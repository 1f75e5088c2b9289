"""In-loop evaluation: lm-eval on the live model at every `eval.every_fraction` of training.

On several processes every rank takes part: the data-parallel ranks split the documents (lm-eval's own
split, `evaluation/data_parallel.py`: the numbers are one process's, in a fraction of its time), and
tensor-parallel peers score the same ones together; no rank idles at a barrier while another evaluates.
Only the main process writes results.
The tasks are loaded before the first step (`prepare`, from the callback's `on_train_start`): a task that
cannot be loaded stops the run there, with nothing trained yet, instead of failing at every evaluation, and
the one-time cost (importing lm-eval and `datasets`, reading the task data) is not paid inside the loop.
Once training runs, a failing evaluation is logged and returns {} — it never kills a multi-hour run.
"""

from __future__ import annotations

import functools
import time
import traceback

from pretrain.core.errors import PretrainError
from pretrain.core.progress import get_logger
from pretrain.evaluation.data_parallel import DataParallelEval, data_parallel_lm_class
from pretrain.evaluation.harness import flatten, item_scores
from pretrain.evaluation.live import LiveEvaluation
from pretrain.evaluation.metrics import eval_line, task_facts
from pretrain.evaluation.position_loss import (
    POSITION_LOSS,
    PositionLoss,
    held_out_windows,
    lm_eval_tasks,
    recipe_bounds,
)
from pretrain.evaluation.records import EvalRecord, write_eval_record
from pretrain.evaluation.task_yaml import all_task_names, existing_task_yamls, write_task_yamls

log = get_logger("pretrain.eval")


class LoopEvaluator:
    def __init__(self, recipe, tokenizer, accelerator=None, data: DataParallelEval | None = None):
        self.recipe, self.tokenizer, self.accelerator = recipe, tokenizer, accelerator
        self.data = data  # several processes: this rank's share of each evaluation (None: one process)
        self.tasks = all_task_names(recipe)
        self._live: LiveEvaluation | None = None
        self._positions: PositionLoss | None = None  # the `position_loss` task, when asked for
        self._prepared = False
        self.seconds = 0.0  # in-loop: every evaluation's own clock, summed
        self.setup_seconds = 0.0  # once, before the first step (`prepare`)

    @property
    def is_main(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    @property
    def takes_part(self) -> bool:
        """This process runs the evaluations (every rank of a run of several, sharing the work)."""
        return self.is_main or self.data is not None

    def prepare(self) -> None:
        """Load the tasks now (import lm-eval, read each task's data), before training; raises PretrainError
        if they cannot be loaded (an unknown task, a missing or unreadable data file, a Hub dataset offline)."""
        if not self.takes_part or self._prepared:
            return
        start = time.perf_counter()
        try:
            self._prepare()
        except PretrainError:
            raise
        # lm-eval and datasets raise many kinds; the user needs the task and the cause
        except Exception as exc:
            raise PretrainError(
                f"eval.tasks {self.tasks}: the in-loop evaluation could not load its tasks "
                f"({type(exc).__name__}: {exc}); fix eval.tasks / eval.local_tasks, or set eval.enabled: false "
                "to train without in-loop evaluation"
            ) from None
        finally:
            self.setup_seconds += time.perf_counter() - start

    def _prepare(self) -> LiveEvaluation | None:
        if POSITION_LOSS in self.tasks and self._positions is None:
            bounds = recipe_bounds(self.recipe)
            windows = held_out_windows(self.recipe.out, self.tokenizer, bounds[-1])
            self._positions = PositionLoss(windows, bounds, self.recipe.eval.batch_size)
        lm_tasks = lm_eval_tasks(self.tasks)
        if self._live is None and lm_tasks:
            if self.data is not None:  # one writer; the other ranks read what it wrote
                if self.is_main:
                    write_task_yamls(self.recipe.out, self.recipe, self.tasks)
                self.accelerator.wait_for_everyone()
                include, local = existing_task_yamls(self.recipe.out, self.tasks)
            else:
                include, local = write_task_yamls(self.recipe.out, self.recipe, self.tasks)
            ev = self.recipe.eval
            split = self.data is not None and self.data.world > 1
            self._live = LiveEvaluation(
                include,
                lm_tasks,
                local,
                ev.limit,
                ev.batch_size,
                ev.num_fewshot or None,
                self.recipe.train.seq_len,
                rc_bpb=ev.rc_bpb,
                lm_factory=functools.partial(data_parallel_lm_class(), data=self.data) if split else None,
            )
        self._prepared = True
        return self._live

    def __call__(self, model, step: int, tokens_seen: int) -> dict[str, float]:
        flat: dict[str, float] = {}
        if self.takes_part:
            start = time.perf_counter()
            was_training = model.training
            try:
                live = self._prepare()
                results = live(model, self.tokenizer) if live is not None else {"results": {}}
                flat = flatten(results)
                if self._positions is not None:
                    positions = self._positions(model)
                    flat.update(positions)
                    results["results"][POSITION_LOSS] = {k.rsplit("/", 1)[1]: v for k, v in positions.items()}
                if self.is_main:
                    facts = task_facts(results, live.chance if live is not None else {})
                    self._record(step, tokens_seen, flat, results, facts, time.perf_counter() - start)
            except Exception as exc:  # an eval bug must not end a long training run
                log.error(
                    "evaluation at step %d failed (%s); training continues\n%s",
                    step,
                    exc,
                    traceback.format_exc(limit=3),
                )
                flat = {}
            finally:
                model.train(was_training)
                self.seconds += time.perf_counter() - start
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            self.accelerator.wait_for_everyone()
        return flat

    def _record(
        self, step: int, tokens_seen: int, flat: dict, results: dict, facts: dict, seconds: float
    ) -> None:
        record = EvalRecord(
            step=step,
            tokens_seen=tokens_seen,
            tasks=self.tasks,
            metrics=flat,
            results=results.get("results", {}),
            seconds=round(seconds, 2),
            task_facts=facts,
            items=item_scores(results),
        )
        write_eval_record(self.recipe.layout, record)
        log.info("%s", eval_line(step, flat, facts, seconds))
