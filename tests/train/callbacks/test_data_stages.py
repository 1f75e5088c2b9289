"""Realised token shares of `train.data_stages`: a `data_stage` event when a stage ends and, at the end of the
run, one for every stage that drew tokens; nothing without data stages."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from pretrain.config.train import StabilityConfig
from pretrain.tokens.stages import LoaderStage, StagedTokenLoader
from pretrain.train.callbacks.base import StepOutput
from pretrain.train.callbacks.data_stages import DataStageReport, describe_shares
from pretrain.train.metrics import EVENT_DATA_STAGE, MetricsLog, data_stage_shares, read_records
from pretrain.train.stability import SpikeGuard
from pretrain.train.state import TrainState

OUT = StepOutput(loss=3.0, grad_norm=1.0, data_wait_s=0.0)
SEQ = 8


class Staged(StagedTokenLoader):
    """The staged loader's bookkeeping (stage of the next batch, windows drawn per stage and source) without
    token files: `draw(step, {source: windows})` stands for one global batch."""

    def __init__(self, stages: list[LoaderStage], sources: list[str]):
        self.stages, self.source_names, self.seq_len = stages, sources, SEQ
        self.step = 0
        self.drawn = np.zeros((len(stages), len(sources)), dtype=np.int64)

    def draw(self, windows: dict[str, int]) -> None:
        stage = self.stage
        for name, n in windows.items():
            self.drawn[stage, self.source_names.index(name)] += n
        self.step += 1


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture()
def lines():
    handler = Lines()
    logger = logging.getLogger("pretrain.train")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


STAGES = [
    LoaderStage("web-heavy", 2, {"web": 0.75, "code": 0.25}),
    LoaderStage("anneal", 4, {"code": 1.0}),
]


@pytest.fixture()
def make(tmp_path):
    """make(loader, main=True) -> (callback, metrics log); a run of 4 steps."""

    def build(loader, main: bool = True):
        setup = SimpleNamespace(
            train_iter=loader, total_steps=4, accelerator=SimpleNamespace(is_main_process=main)
        )
        metrics = MetricsLog(tmp_path / "metrics.jsonl", SimpleNamespace(trackers=[]), enabled=True)
        return DataStageReport(setup, metrics), metrics

    return build


def run(callback, loader: Staged, batches: list[dict[str, int]]) -> None:
    state = TrainState(SpikeGuard(StabilityConfig()))
    for windows in batches:
        loader.draw(windows)
        state.step = loader.step
        callback.on_step_end(state, OUT)


BATCHES = [{"web": 3, "code": 1}, {"web": 2, "code": 2}, {"code": 4}, {"code": 4}]


def stage_events(metrics) -> list[dict]:
    return [r for r in read_records(metrics.path) if r.get("event") == EVENT_DATA_STAGE]


def test_the_end_of_a_stage_logs_its_realised_shares_at_that_step(make):
    loader = Staged(STAGES, ["web", "code"])
    callback, metrics = make(loader)
    run(callback, loader, BATCHES[:2])
    (event,) = stage_events(metrics)
    assert (event["step"], event["stage"], event["index"], event["at"]) == (2, "web-heavy", 0, "boundary")
    assert event["tokens"] == 8 * SEQ
    assert event["requested"] == {"web": 0.75, "code": 0.25}
    assert event["realised"] == {"web": 0.625, "code": 0.375}


def test_the_end_of_the_run_logs_every_stage_once_more(make):
    loader = Staged(STAGES, ["web", "code"])
    callback, metrics = make(loader)
    run(callback, loader, BATCHES)
    assert [(e["step"], e["stage"], e["at"]) for e in stage_events(metrics)] == [
        (2, "web-heavy", "boundary"),
        (4, "web-heavy", "end"),
        (4, "anneal", "end"),
    ]
    anneal = stage_events(metrics)[-1]
    assert anneal["tokens"] == 8 * SEQ and anneal["realised"] == {"code": 1.0}
    assert [r["stage"] for r in data_stage_shares(read_records(metrics.path))] == ["web-heavy", "anneal"]


def test_a_stage_that_drew_nothing_is_left_out_at_the_end(make):
    loader = Staged(STAGES, ["web", "code"])
    loader.step = 2  # a branch starting in the second stage (`pretrain anneal`)
    callback, metrics = make(loader)
    state = TrainState(SpikeGuard(StabilityConfig()))
    for windows in BATCHES[2:]:
        loader.draw(windows)
        state.step = loader.step
        callback.on_step_end(state, OUT)
    assert [(e["stage"], e["at"]) for e in stage_events(metrics)] == [("anneal", "end")]


def test_the_main_process_says_what_each_stage_realised(make, lines):
    loader = Staged(STAGES, ["web", "code"])
    callback, _ = make(loader)
    run(callback, loader, BATCHES[:2])
    assert lines == [
        "data stage web-heavy (64 tokens) ended: realised share (requested) web 62.5% (75.0%), code 37.5% (25.0%)"
    ]


def test_other_processes_log_the_events_but_print_nothing(make, lines):
    loader = Staged(STAGES, ["web", "code"])
    callback, metrics = make(loader, main=False)
    run(callback, loader, BATCHES)
    assert lines == [] and len(stage_events(metrics)) == 3


def test_without_data_stages_nothing_is_logged(make):
    callback, metrics = make(SimpleNamespace(stage=0))  # the plain token loader
    state = TrainState(SpikeGuard(StabilityConfig()))
    for step in range(1, 5):
        state.step = step
        callback.on_step_end(state, OUT)
    assert read_records(metrics.path) == []


def test_shares_are_described_as_realised_then_requested_percentages():
    record = {"realised": {"web": 0.598, "code": 0.402}, "requested": {"web": 0.6, "code": 0.4}}
    assert describe_shares(record) == "web 59.8% (60.0%), code 40.2% (40.0%)"


def test_a_source_drawn_without_being_requested_shows_zero_requested():
    assert describe_shares({"realised": {"web": 1.0}, "requested": {}}) == "web 100.0% (0.0%)"
