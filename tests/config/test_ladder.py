"""Recipe section `ladder`: the sizes and token budgets of the small runs that fit the recipe's scaling law."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pretrain.config.ladder import MIN_SPAN, LadderConfig, LadderSlurmConfig


def test_the_default_ladder_is_four_sizes_over_13x_on_three_budgets():
    cfg = LadderConfig()
    assert (cfg.sizes, cfg.smallest, cfg.largest) == (4, 0.03, 0.4)
    assert cfg.budgets == [5.0, 10.0, 20.0] and cfg.budget_unit == "tokens_per_param"
    assert cfg.executor == "local" and cfg.slurm is None
    assert cfg.global_batch_tokens is None and cfg.micro_batch_size is None


def test_a_span_of_exactly_the_minimum_is_enough():
    cfg = LadderConfig(smallest=0.04, largest=0.04 * MIN_SPAN)
    assert cfg.largest / cfg.smallest == pytest.approx(MIN_SPAN)


def test_a_ladder_over_less_than_ten_times_in_size_is_an_error():
    with pytest.raises(ValidationError, match=r"largest / smallest = 5; the ladder must span at least 10x"):
        LadderConfig(smallest=0.05, largest=0.25)


def test_repeated_budgets_are_an_error():
    with pytest.raises(ValidationError, match="must be distinct positive numbers"):
        LadderConfig(budgets=[5.0, 10.0, 5.0])


def test_a_non_positive_budget_is_an_error():
    with pytest.raises(ValidationError, match="must be distinct positive numbers"):
        LadderConfig(budgets=[0.0, 10.0])


def test_target_fractions_above_one_are_an_error():
    with pytest.raises(ValidationError, match=r"with budget_unit target_fraction each is a fraction \(0-1\]"):
        LadderConfig(budget_unit="target_fraction", budgets=[0.5, 1.5])


def test_target_fractions_up_to_one_and_token_budgets_above_one_are_fine():
    assert LadderConfig(budget_unit="target_fraction", budgets=[0.5, 1.0]).budgets == [0.5, 1.0]
    assert LadderConfig(budgets=[20.0, 40.0]).budgets == [20.0, 40.0]


def test_the_slurm_executor_needs_a_slurm_block():
    with pytest.raises(ValidationError, match="executor slurm needs a `slurm:` block"):
        LadderConfig(executor="slurm")


def test_the_slurm_executor_with_a_partition_is_valid_and_has_day_long_array_tasks():
    cfg = LadderConfig(executor="slurm", slurm={"partition": "gpu"})
    assert isinstance(cfg.slurm, LadderSlurmConfig)
    assert (cfg.slurm.partition, cfg.slurm.time, cfg.slurm.cpus_per_task, cfg.slurm.gpus_per_task) == (
        "gpu",
        "24:00:00",
        8,
        0,
    )


@pytest.mark.parametrize("time", ["2-00:00:00", "02:00:00"])
def test_slurm_time_limits_are_days_hours_minutes_seconds(time):
    assert LadderSlurmConfig(partition="gpu", time=time).time == time


@pytest.mark.parametrize("time", ["2h", "90", "1 day"])
def test_a_slurm_time_limit_in_another_form_is_an_error(time):
    with pytest.raises(ValidationError, match="time"):
        LadderSlurmConfig(partition="gpu", time=time)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sizes", 2),
        ("sizes", 7),
        ("smallest", 0),
        ("largest", 1.5),
        ("budgets", [10.0]),
        ("budgets", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
        ("warmup_fraction", 0.5),
        ("min_steps", 1),
        ("executor", "ray"),
    ],
)
def test_out_of_range_values_are_errors(key, value):
    with pytest.raises(ValidationError, match=key):
        LadderConfig(**{key: value})
