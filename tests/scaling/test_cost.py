"""Run cost in dollars: rented or owned GPU-hours plus engineering, and what a dollar budget buys."""

from __future__ import annotations

import pytest

from pretrain.config.plan import PlanConfig
from pretrain.core.errors import PretrainError
from pretrain.scaling.cost import HOURS_PER_YEAR, cost_of, gpu_hours_for


def test_rented_gpu_hours_plus_engineering():
    cost = cost_of(PlanConfig(usd_per_gpu_hour=3.0, engineering_usd=20_000), 1000)
    assert cost.items == [("GPU rental ($3 per GPU-hour)", 3000.0), ("engineering", 20_000)]
    assert cost.total == 23_000 and cost.as_dict()["total_usd"] == 23_000
    assert cost_of(PlanConfig(), 1000) is None  # nothing priced: no cost shown


def test_owned_hardware_is_depreciation_plus_power():
    plan = PlanConfig(gpu_purchase_usd=35_040, gpu_life_years=4, gpu_power_kw=1.0, pue=1.5, usd_per_kwh=0.1)
    (depreciation, d_usd), (power, p_usd) = cost_of(plan, 100).items
    assert d_usd == pytest.approx(100 * 35_040 / (4 * HOURS_PER_YEAR)) and d_usd == pytest.approx(100.0)
    assert p_usd == pytest.approx(100 * 1.0 * 1.5 * 0.1) and "PUE 1.5" in power and "4 years" in depreciation


def test_a_dollar_budget_pays_engineering_first_then_buys_gpu_hours():
    assert gpu_hours_for(PlanConfig(usd_per_gpu_hour=2.5, engineering_usd=50_000), 100_000) == 20_000
    with pytest.raises(PretrainError, match="does not cover plan.engineering_usd"):
        gpu_hours_for(PlanConfig(usd_per_gpu_hour=2.5, engineering_usd=50_000), 40_000)
    with pytest.raises(PretrainError, match="set plan.usd_per_gpu_hour .rented. or plan.gpu_purchase_usd"):
        gpu_hours_for(PlanConfig(), 100_000)


def test_plan_budget_usd_proposes_within_the_budget(tiny_recipe_path, tmp_path, capsys):
    """Issue #31: `pretrain plan --budget-usd 100000`: the size and tokens for the money, cost broken down."""
    from pretrain.commands.plan import plan
    from pretrain.config import load_recipe

    recipe = load_recipe(
        tiny_recipe_path, overrides=["plan.engineering_usd=20000"], output_dir=str(tmp_path / "run")
    )
    assert plan(recipe, budget_usd=100_000) == 0
    out = capsys.readouterr().out
    assert "(= 2.667e+04 GPU-hours on NVIDIA H100 SXM at 40% MFU)" in out  # $80,000 at the recipe's $3
    assert "GPU rental ($3 per GPU-hour): $80,000" in out and "cost, total: $100,000" in out
    assert "attention included" in out
