"""Throughput and the step record: the run's start record, and every `log_every` steps (and at the last) a
record averaging the window since the previous one: loss, tokens/s, MFU, step time, data wait; plus the
progress line with those values."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from pretrain.config.parallelism import MeshShape
from pretrain.config.train import StabilityConfig
from pretrain.train.callbacks.base import StepOutput
from pretrain.train.callbacks.speed_monitor import SpeedMonitor, device_label
from pretrain.train.metrics import EVENT_START, MetricsLog, read_records, step_records
from pretrain.train.parallel.mesh import Parallelism
from pretrain.train.stability import SpikeGuard
from pretrain.train.state import TrainState


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, record.getMessage()))


@pytest.fixture()
def lines():
    handler = Lines()
    loggers = [logging.getLogger("pretrain.train"), logging.getLogger("pretrain.progress")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.lines
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.fixture()
def make(tmp_path):
    """make(main=True, peak_flops=1e12, parent=None) -> (callback, metrics log); a run of 5 steps, logging
    every 2, of 1000 tokens per step on 2 processes."""

    def build(main: bool = True, peak_flops: float | None = 1e12, parent: dict | None = None):
        setup = SimpleNamespace(
            accelerator=SimpleNamespace(num_processes=2, is_main_process=main),
            parallelism=Parallelism(MeshShape(dp_replicate=2)),
            device=torch.device("cpu"),
            n_params=1_234_567,
            recipe=SimpleNamespace(train=SimpleNamespace(precision="fp32", log_every=2)),
            parent=parent,
            total_steps=5,
            tokens_per_step=1000,
            accum=2,
            optimizer=SimpleNamespace(param_groups=[{"lr": 1e-3}]),
            flops_per_token=6e6,
            peak_flops=peak_flops,
        )
        metrics = MetricsLog(tmp_path / "metrics.jsonl", SimpleNamespace(trackers=[]), enabled=True)
        return SpeedMonitor(setup, metrics), metrics

    return build


def new_state(step: int = 0) -> TrainState:
    return TrainState(SpikeGuard(StabilityConfig()), step=step)


def step(callback, state: TrainState, loss: float, seconds: float, wait: float = 0.0, **extra) -> None:
    state.step += 1
    state.tokens_seen += 1000
    callback.on_step_end(
        state, StepOutput(loss=loss, grad_norm=0.5, data_wait_s=wait, seconds=seconds, **extra)
    )


def test_the_cpu_is_labelled_with_its_thread_count():
    label = device_label(torch.device("cpu"))
    assert label.startswith("CPU (") and label.endswith(f", {torch.get_num_threads()} threads)")


def test_a_new_run_logs_its_start_record_and_says_what_it_trains(make, lines):
    callback, metrics = make(parent={"model": "me/parent", "revision": "main", "commit": None})
    callback.on_train_start(new_state())
    (start,) = read_records(metrics.path)
    assert start["event"] == EVENT_START and start["step"] == 0
    assert (start["world_size"], start["params"], start["precision"]) == (2, 1_234_567, "fp32")
    assert start["device"] == device_label(torch.device("cpu")) and start["torch"] == torch.__version__
    assert start["parent"] == {"model": "me/parent", "revision": "main", "commit": None}
    assert (
        "pretrain.train",
        f"training 1,234,567 params for 5 steps (1000 tokens/step, accum 2 x 2 ranks, fp32, "
        f"{device_label(torch.device('cpu'))})",
    ) in lines


def test_a_sharded_run_counts_data_parallel_ranks_and_names_its_mesh(make, lines):
    callback, _ = make()
    callback.setup.parallelism = Parallelism(MeshShape(dp_shard=2, tp=2))
    callback.on_train_start(new_state())
    assert any(
        "(1000 tokens/step, accum 2 x 2 ranks, mesh dp_replicate 1 x dp_shard 2 x tp 2 x cp 1 = 4 processes, fp32"
        in line
        for _, line in lines
    )


def test_a_resumed_run_keeps_its_start_record(make, lines):
    callback, metrics = make()
    callback.on_train_start(new_state())
    callback.on_train_start(new_state(3))
    assert [r["event"] for r in read_records(metrics.path)] == [EVENT_START]
    assert sum(message.startswith("training ") for _, message in lines) == 1


def test_a_branch_without_a_log_of_its_own_starts_at_its_checkpoint_step(make):
    callback, metrics = make()
    callback.on_train_start(new_state(3))
    (start,) = read_records(metrics.path)
    assert start["event"] == EVENT_START and start["step"] == 3 and "parent" not in start


def test_other_processes_log_the_start_but_print_nothing(make, lines):
    callback, metrics = make(main=False)
    callback.on_train_start(new_state())
    assert len(read_records(metrics.path)) == 1 and lines == []


def test_a_step_record_every_log_every_steps_and_at_the_last(make):
    callback, metrics = make()
    state = new_state()
    callback.on_train_start(state)
    for _ in range(5):
        step(callback, state, 3.0, 1.0)
    assert [r["step"] for r in step_records(read_records(metrics.path))] == [2, 4, 5]


def test_a_record_averages_the_window_since_the_last_one(make):
    callback, metrics = make()
    state = new_state()
    state.guard.skipped = 1
    callback.on_train_start(state)
    step(callback, state, 4.0, seconds=0.5, wait=0.1)
    step(callback, state, 2.0, seconds=1.5, wait=0.3)
    (record,) = step_records(read_records(metrics.path))
    assert record["loss"] == 3.0 and record["tokens_per_s"] == 1000.0
    assert record["step_time_s"] == 1.0 and record["data_wait_s"] == 0.2
    assert (record["tokens_seen"], record["lr"], record["grad_norm"], record["skipped_updates"]) == (
        2000,
        1e-3,
        0.5,
        1,
    )
    assert record["mfu"] == round(6e6 * 1000.0 / 1e12, 4)
    assert "z_loss" not in record


def test_the_window_starts_afresh_after_a_record(make):
    callback, metrics = make()
    state = new_state()
    callback.on_train_start(state)
    for loss, seconds in ((10.0, 9.0), (10.0, 9.0), (3.0, 0.25), (1.0, 0.75)):
        step(callback, state, loss, seconds)
    second = step_records(read_records(metrics.path))[1]
    assert second["loss"] == 2.0 and second["tokens_per_s"] == 2000.0 and second["step_time_s"] == 0.5


def test_without_a_device_peak_there_is_no_mfu(make):
    callback, metrics = make(peak_flops=None)
    state = new_state()
    callback.on_train_start(state)
    step(callback, state, 3.0, 1.0)
    step(callback, state, 3.0, 1.0)
    assert step_records(read_records(metrics.path))[0]["mfu"] is None


def test_the_z_loss_is_averaged_when_measured(make):
    callback, metrics = make()
    state = new_state()
    callback.on_train_start(state)
    step(callback, state, 3.0, 1.0, z_loss=0.2)
    step(callback, state, 3.0, 1.0, z_loss=0.4)
    assert step_records(read_records(metrics.path))[0]["z_loss"] == pytest.approx(0.3)


def test_the_time_left_is_zero_at_the_last_step(make):
    callback, metrics = make()
    state = new_state()
    callback.on_train_start(state)
    for _ in range(5):
        step(callback, state, 3.0, 1.0)
    etas = [r["eta_s"] for r in step_records(read_records(metrics.path))]
    assert etas[-1] == 0.0 and all(eta >= 0 for eta in etas)


def test_the_last_steps_progress_line_shows_the_newest_values(make, lines):
    callback, _ = make()
    state = new_state()
    callback.on_train_start(state)
    for _ in range(5):
        step(callback, state, 3.0, 1.0)
    callback.on_train_end()
    progress = [message for name, message in lines if name == "pretrain.progress"]
    assert progress[-1].startswith(
        "train: 5/5 steps (100%), loss 3.0000, lr 1.00e-03, gnorm 0.50, tok/s 1,000, MFU 0.6%"
    )


def test_other_processes_print_no_progress(make, lines):
    callback, _ = make(main=False)
    state = new_state()
    callback.on_train_start(state)
    for _ in range(5):
        step(callback, state, 3.0, 1.0)
    assert [name for name, _ in lines if name == "pretrain.progress"] == []


def test_ending_before_starting_is_harmless(make):
    make()[0].on_train_end()
