"""In-loop evaluation: the tasks load before the first step, run at each `eval.every_fraction` of training on
the unwrapped model without consuming the training RNG streams, their results go to metrics.jsonl, and a
score worse than the last evaluation's beyond its noise is a warning."""

from __future__ import annotations

import logging
import random
from types import SimpleNamespace

import pytest
import torch

from pretrain.config.train import StabilityConfig
from pretrain.core.layout import RunLayout
from pretrain.evaluation.records import EvalRecord, write_eval_record
from pretrain.train.callbacks.base import StepOutput
from pretrain.train.callbacks.evaluation import InLoopEvaluation
from pretrain.train.metrics import MetricsLog, read_records
from pretrain.train.stability import SpikeGuard
from pretrain.train.state import TrainState

OUT = StepOutput(loss=3.0, grad_norm=1.0, data_wait_s=0.0)


class Evaluator:
    """Stands in for the LoopEvaluator: records its calls and draws from every RNG as lm-eval may."""

    def __init__(self, results: dict | None = None, setup_seconds: float = 1.5):
        self.tasks, self.setup_seconds = ["val_bpb", "stdlib_cloze"], setup_seconds
        self.results = {"eval/stdlib_cloze/acc": 0.4} if results is None else results
        self.prepared, self.calls = 0, []

    def prepare(self) -> None:
        self.prepared += 1

    def __call__(self, model, step: int, tokens_seen: int) -> dict:
        self.calls.append((model, step, tokens_seen))
        random.random()
        torch.rand(100)
        return self.results


class Model:
    def __init__(self):
        self.train_calls = 0

    def train(self) -> None:
        self.train_calls += 1


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


@pytest.fixture()
def lines():
    handler = Lines()
    logger = logging.getLogger("pretrain.train")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


@pytest.fixture()
def make(tmp_path):
    """make(evaluator, total_steps=10, every_fraction=0.5, main=True) -> (callback, setup, metrics log)."""

    def build(evaluator, total_steps: int = 10, every_fraction: float = 0.5, main: bool = True):
        model = Model()
        recipe = SimpleNamespace(
            eval=SimpleNamespace(every_fraction=every_fraction), layout=RunLayout(tmp_path)
        )
        accelerator = SimpleNamespace(is_main_process=main, unwrap_model=lambda m: ("unwrapped", m))
        setup = SimpleNamespace(recipe=recipe, total_steps=total_steps, accelerator=accelerator, model=model)
        metrics = MetricsLog(tmp_path / "metrics.jsonl", SimpleNamespace(trackers=[]), enabled=True)
        return InLoopEvaluation(setup, metrics, evaluator), setup, metrics

    return build


def state_at(step: int, tokens_per_step: int = 100) -> TrainState:
    return TrainState(SpikeGuard(StabilityConfig()), step=step, tokens_seen=step * tokens_per_step)


def test_evaluations_are_at_each_fraction_of_training_and_at_the_end(make):
    callback, _, _ = make(Evaluator(), total_steps=10, every_fraction=0.3)
    assert callback.steps == {3, 7, 10}


def test_the_tasks_load_before_the_first_step(make, lines):
    evaluator = Evaluator()
    callback, _, _ = make(evaluator)
    callback.on_train_start(state_at(0))
    assert evaluator.prepared == 1
    assert lines == [(logging.INFO, "eval tasks val_bpb, stdlib_cloze loaded in 1.5 s")]


def test_a_run_resumed_after_its_last_evaluation_loads_no_task(make):
    evaluator = Evaluator()
    callback, _, _ = make(evaluator)
    callback.on_train_start(state_at(10))
    assert evaluator.prepared == 0


def test_a_run_resumed_before_an_evaluation_loads_the_tasks(make):
    evaluator = Evaluator()
    callback, _, _ = make(evaluator)
    callback.on_train_start(state_at(7))
    assert evaluator.prepared == 1


def test_tasks_loaded_instantly_or_on_another_process_print_nothing(make, lines):
    make(Evaluator(setup_seconds=0.0))[0].on_train_start(state_at(0))
    make(Evaluator(), main=False)[0].on_train_start(state_at(0))
    assert lines == []


def test_steps_between_evaluations_do_nothing(make):
    evaluator = Evaluator()
    callback, setup, metrics = make(evaluator)
    for step in (1, 2, 3, 4, 6):
        callback.on_step_end(state_at(step), OUT)
    assert evaluator.calls == [] and setup.model.train_calls == 0 and read_records(metrics.path) == []


def test_an_evaluation_scores_the_unwrapped_model_and_logs_its_results(make):
    evaluator = Evaluator()
    callback, setup, metrics = make(evaluator)
    callback.on_step_end(state_at(5), OUT)
    assert evaluator.calls == [(("unwrapped", setup.model), 5, 500)]
    assert setup.model.train_calls == 1  # back to training mode
    (record,) = read_records(metrics.path)
    assert (record["step"], record["tokens_seen"], record["eval/stdlib_cloze/acc"]) == (5, 500, 0.4)


def test_an_evaluation_without_results_logs_nothing_but_still_resumes_training_mode(make):
    callback, setup, metrics = make(Evaluator(results={}))
    callback.on_step_end(state_at(5), OUT)
    assert read_records(metrics.path) == [] and setup.model.train_calls == 1


def test_evaluating_does_not_change_the_training_random_streams(make):
    callback, _, _ = make(Evaluator())
    random.seed(1)
    torch.manual_seed(1)
    expected = (random.random(), torch.rand(3).tolist())
    random.seed(1)
    torch.manual_seed(1)
    callback.on_step_end(state_at(5), OUT)
    assert (random.random(), torch.rand(3).tolist()) == expected


def _record(tmp_path, step: int, acc: float, stderr: float) -> None:
    write_eval_record(
        RunLayout(tmp_path),
        EvalRecord(
            step=step,
            tokens_seen=step * 100,
            tasks=["stdlib_cloze"],
            metrics={"eval/stdlib_cloze/acc": acc},
            results={"stdlib_cloze": {"acc,none": acc, "acc_stderr,none": stderr}},
        ),
    )


def test_a_regression_at_this_evaluation_is_a_warning(make, tmp_path, lines):
    _record(tmp_path, 5, acc=0.50, stderr=0.02)
    _record(tmp_path, 10, acc=0.40, stderr=0.02)
    callback, _, _ = make(Evaluator())
    callback.on_step_end(state_at(10), OUT)
    assert lines == [
        (
            logging.WARNING,
            # no per-item scores in these records: the unpaired z-test, one-sided p = P(Z > 0.1 / sqrt(2) / 0.02)
            "step 10: evaluation regression: stdlib_cloze/acc went from 0.5000 (step 5) to 0.4000 (step 10): "
            "worse at p=0.0002 < 0.01 (two-sample z-test, standard errors 0.02 and 0.02 (no per-item scores))",
        )
    ]


def test_a_drop_within_the_noise_is_no_warning(make, tmp_path, lines):
    _record(tmp_path, 5, acc=0.50, stderr=0.05)
    _record(tmp_path, 10, acc=0.48, stderr=0.05)
    make(Evaluator())[0].on_step_end(state_at(10), OUT)
    assert lines == []


def test_a_regression_at_an_earlier_evaluation_is_not_repeated(make, tmp_path, lines):
    _record(tmp_path, 3, acc=0.50, stderr=0.02)
    _record(tmp_path, 5, acc=0.30, stderr=0.02)
    _record(tmp_path, 10, acc=0.35, stderr=0.02)
    make(Evaluator())[0].on_step_end(state_at(10), OUT)
    assert lines == []


def test_only_the_main_process_warns_of_regressions(make, tmp_path, lines):
    _record(tmp_path, 5, acc=0.50, stderr=0.02)
    _record(tmp_path, 10, acc=0.40, stderr=0.02)
    make(Evaluator(), main=False)[0].on_step_end(state_at(10), OUT)
    assert lines == []
