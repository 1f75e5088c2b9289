"""Realised token shares of `train.data_stages`: a `data_stage` event in metrics.jsonl when a stage ends
and, at the end of the run, one for every stage (the model card and the train summary read them).

A record: {"event": "data_stage", "step", "stage": name, "index", "at": "boundary" | "end", "tokens",
"requested": {source: weight share}, "realised": {source: token share}}. Without data stages it does nothing.
"""

from __future__ import annotations

from pretrain.core.progress import get_logger
from pretrain.tokens.stages import StagedTokenLoader
from pretrain.train.callbacks.base import Callback, StepOutput
from pretrain.train.metrics import EVENT_DATA_STAGE, MetricsLog
from pretrain.train.setup import TrainSetup
from pretrain.train.state import TrainState

log = get_logger("pretrain.train")


def describe_shares(record: dict) -> str:
    """`web 59.8% (60.0%), code 40.2% (40.0%)`: realised token share (requested) per source."""
    return ", ".join(
        f"{name} {100 * share:.1f}% ({100 * record['requested'].get(name, 0.0):.1f}%)"
        for name, share in record["realised"].items()
    )


class DataStageReport(Callback):
    def __init__(self, setup: TrainSetup, metrics: MetricsLog):
        self.setup, self.metrics = setup, metrics
        loader = setup.train_iter
        self.loader = loader if isinstance(loader, StagedTokenLoader) else None
        self.stage = self.loader.stage if self.loader else None

    def _log(self, step: int, record: dict, at: str) -> None:
        self.metrics.log_event(
            step,
            EVENT_DATA_STAGE,
            stage=record["stage"],
            index=record["index"],
            at=at,
            tokens=record["tokens"],
            requested=record["requested"],
            realised=record["realised"],
        )
        if self.setup.accelerator.is_main_process:
            log.info(
                "data stage %s (%s tokens) %s: realised share (requested) %s",
                record["stage"],
                f"{record['tokens']:,}",
                "ended" if at == "boundary" else "at the end of the run",
                describe_shares(record),
            )

    def on_step_end(self, state: TrainState, out: StepOutput) -> None:
        if self.loader is None:
            return
        if self.loader.stage != self.stage:  # the next global batch belongs to a new stage
            self._log(state.step, self.loader.realised_shares()[self.stage], "boundary")
            self.stage = self.loader.stage
        if state.step == self.setup.total_steps:
            for record in self.loader.realised_shares():
                if record["tokens"]:  # a branch (`pretrain anneal`) draws nothing from stages before it
                    self._log(state.step, record, "end")
