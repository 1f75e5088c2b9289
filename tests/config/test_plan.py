"""Recipe section `plan`: the hardware `pretrain plan` assumes for its GPU-hour and cost estimates."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pretrain.config.plan import PlanConfig
from pretrain.scaling.flops import gpu_spec


def test_the_default_plan_is_eight_h100s_at_forty_percent_mfu_without_a_price():
    plan = PlanConfig()
    assert (plan.gpu, plan.num_gpus, plan.mfu, plan.usd_per_gpu_hour) == ("h100", 8, 0.4, None)


def test_the_default_gpu_is_one_the_planner_knows():
    assert gpu_spec(PlanConfig().gpu).bf16_tflops > 0


def test_an_mfu_of_exactly_one_and_an_integer_price_are_accepted():
    plan = PlanConfig(mfu=1, usd_per_gpu_hour=3)
    assert plan.mfu == 1.0 and plan.usd_per_gpu_hour == 3.0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("num_gpus", 0),
        ("mfu", 0),
        ("mfu", 1.01),
        ("mfu", -0.1),
        ("usd_per_gpu_hour", 0),
        ("usd_per_gpu_hour", -2.5),
    ],
)
def test_out_of_range_values_are_errors(key, value):
    with pytest.raises(ValidationError, match=key):
        PlanConfig(**{key: value})


def test_numbers_given_as_strings_are_errors():
    with pytest.raises(ValidationError, match="mfu"):
        PlanConfig(mfu="0.4")
    with pytest.raises(ValidationError, match="num_gpus"):
        PlanConfig(num_gpus=8.0)
