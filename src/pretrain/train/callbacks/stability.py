"""Loss-spike handling on the loop: skip the update of a bad step, roll back when spikes persist.

The decision itself is `train.stability.SpikeGuard`'s; this callback acts on it. A rollback restores
the last good checkpoint's weights, optimizer and counters but keeps the loader where it is, so
training moves past the offending data window instead of replaying it.

Every skip and rollback names the step's data: the `skip` / `rollback` events in metrics.jsonl carry the
loader's `data_step` (the global batch's index, which `pretrain inspect-batch --data-step` draws again) and
the batch's documents (source, id in the mix, first characters; tokens/forensics.py), and the warning names
the first few.
"""

from __future__ import annotations

from pretrain.core.errors import DataError
from pretrain.core.progress import get_logger
from pretrain.tokens.forensics import step_documents
from pretrain.train import checkpoint as ckpt
from pretrain.train.callbacks.base import Callback, StepOutput
from pretrain.train.checkpointer import Checkpointer
from pretrain.train.metrics import EVENT_ROLLBACK, EVENT_SKIP, MetricsLog
from pretrain.train.setup import TrainSetup
from pretrain.train.state import TrainingError, TrainState

log = get_logger("pretrain.train")


MAX_DOCUMENTS = 256  # documents listed in one event (`documents_total` counts them all)
LOGGED_DOCUMENTS = 3  # named in the warning line


def describe_documents(data: dict) -> str:
    """`data step 371, 23 documents: stdlib_code/os.py "import abc, sys..." (+20 more)` for a log line."""
    docs = data.get("documents")
    if docs is None:
        return f"data step {data.get('data_step', '?')} (documents on the main process's log)"
    named = ", ".join(f'{d["source"]}/{d["id"]} "{d["text"][:40]}"' for d in docs[:LOGGED_DOCUMENTS])
    more = data.get("documents_total", len(docs)) - min(len(docs), LOGGED_DOCUMENTS)
    return f"data step {data['data_step']}, {data.get('documents_total', len(docs))} documents: {named}" + (
        f" (+{more} more in metrics.jsonl)" if more > 0 else ""
    )


class SpikeGuardCallback(Callback):
    def __init__(self, setup: TrainSetup, metrics: MetricsLog, checkpointer: Checkpointer):
        self.setup, self.metrics, self.checkpointer = setup, metrics, checkpointer
        self.cfg = setup.recipe.train.stability
        self.last_data: dict = {}  # the last skipped step's data (a rollback names it too)

    def pre_optim_step(self, state: TrainState, out: StepOutput) -> str | None:
        """The guard's verdict on this step's loss and gradient norm: None to apply the update, else why not."""
        reason = state.guard.check(out.loss, out.grad_norm)
        if reason:
            step = state.step + 1  # the step being taken
            self.last_data = self._step_data()
            self.metrics.log_event(
                step, EVENT_SKIP, reason=reason, loss=out.loss, grad_norm=out.grad_norm, **self.last_data
            )
            log.warning(
                "step %d: update skipped (%s, loss %.4f, grad norm %.3g); its batch: %s",
                step,
                reason,
                out.loss,
                out.grad_norm,
                describe_documents(self.last_data),
            )
        return reason

    def _step_data(self) -> dict:
        """The data of the step just taken: its global batch's index and documents (main process only: the
        others log nothing, and every rank's loader knows the whole global batch)."""
        loader = self.setup.train_iter
        data = {"data_step": loader.data_step - 1}
        if not self.setup.accelerator.is_main_process:
            return data
        try:
            seq_len, windows = loader.last_step_windows()
            docs = step_documents(loader, seq_len, windows, self.setup.tokenizer)
        except (OSError, ValueError, DataError) as exc:  # naming the data must never stop the run
            log.warning("could not name the documents of data step %d: %s", data["data_step"], exc)
            return data
        return {
            **data,
            "documents_total": len(docs),
            "documents": [d.to_json() for d in docs[:MAX_DOCUMENTS]],
        }

    def on_update_skipped(self, state: TrainState, out: StepOutput) -> bool:
        """Spikes that persist (`spikes_before_rollback` in a row): back to the last good checkpoint."""
        if not state.guard.wants_rollback:
            return False
        self.rollback(state)
        return True

    def rollback(self, state: TrainState) -> None:
        """Back to the last good checkpoint; raises TrainingError when rollbacks are used up or none exists."""
        guard, cfg = state.guard, self.cfg
        if guard.rollbacks >= cfg.max_rollbacks:
            raise TrainingError(
                f"loss spiked for {guard.consecutive} consecutive steps at step {state.step} and "
                f"{guard.rollbacks} rollbacks were already used (train.stability.max_rollbacks); "
                "lower train.optimizer.lr, raise train.stability.zscore, or inspect the data around this step"
            )
        self.checkpointer.finish()  # a save in flight completes first: it may be the last good one
        target = state.last_good or (ckpt.list_checkpoints(self.checkpointer.root) or [None])[-1]
        if target is None:
            raise TrainingError(
                f"loss spiked at step {state.step} before any checkpoint existed; lower the lr or warm up longer"
            )
        bad_step, tokens = state.step, state.tokens_seen
        guard.rollbacks += 1
        self.checkpointer.restore(target, state, with_data=False)  # the loader stays past the bad window
        self.setup.train_iter.skip_steps(cfg.skip_window_steps)
        state.tokens_seen = (
            tokens  # tokens consumed still count; the schedule restarts from the checkpoint's step
        )
        guard.consecutive = 0
        bad = self.last_data
        self.metrics.log_event(
            state.step,
            EVENT_ROLLBACK,
            from_step=bad_step,
            to=str(target),
            rollbacks=guard.rollbacks,
            skipped_data_steps=cfg.skip_window_steps,
            **bad,
        )
        log.warning(
            "rolled back from step %d to %s (rollback %d of %d); the data skipped past the batch of %s",
            bad_step,
            target,
            guard.rollbacks,
            cfg.max_rollbacks,
            describe_documents(bad),
        )
