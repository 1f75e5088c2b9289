"""`pretrain plan`: the option errors, and the recipe's plan, a budget's proposal or the ladder fit's view of a
budget printed as a table or as JSON. The figures are scaling/plan.py's; here only what is printed of them."""

from __future__ import annotations

import json

import pytest

from pretrain.commands.plan import plan
from pretrain.config import load_recipe
from pretrain.core.errors import PretrainError
from pretrain.scaling.forecast import Forecast
from pretrain.scaling.law import ScalingFit, ScalingLaw
from pretrain.scaling.plan import forecast_plan, plan_recipe, propose


@pytest.fixture()
def tiny(tiny_recipe_path, tmp_path):
    """recipe(*overrides): the tiny recipe writing to this test's folder (no ladder fit there)."""

    def make(*overrides: str):
        return load_recipe(tiny_recipe_path, overrides=list(overrides), output_dir=str(tmp_path / "run"))

    return make


def write_fit(recipe) -> None:
    """A ladder fit in the run folder, as `pretrain ladder` leaves it (no ladder record)."""
    law = ScalingLaw(E=1.8, A=400.0, B=400.0, alpha=0.34, beta=0.28)
    bootstrap = [
        ScalingLaw(E=1.7, A=380.0, B=390.0, alpha=0.33, beta=0.27),
        ScalingLaw(E=1.9, A=420.0, B=410.0, alpha=0.35, beta=0.29),
    ]
    fit = ScalingFit(law, bootstrap, [1e5, 1e6], [1e6, 1e7], [3.0, 2.5], objective=0.0)
    recipe.layout.ladder_fit.parent.mkdir(parents=True, exist_ok=True)
    recipe.layout.ladder_fit.write_text(fit.to_json())


def printed(capsys, *args, **kwargs) -> str:
    assert plan(*args, **kwargs) == 0
    return capsys.readouterr().out


def rows(text: str) -> dict[str, str]:
    """The table's `  key  value` rows."""
    out = {}
    for line in text.splitlines()[1:]:
        key, _, value = line.strip().partition("  ")
        out[key] = value.strip()
    return out


# ---------------------------------------------------------------------------------------------- options
def test_no_recipe_and_no_budget_is_an_error_naming_both_ways():
    with pytest.raises(
        PretrainError, match=r"plan: give a RECIPE, or --budget-flops C / --budget-gpu-hours H --gpu"
    ):
        plan(None)


def test_a_gpu_hour_budget_needs_a_gpu(capsys):
    with pytest.raises(PretrainError, match=r"plan: --budget-gpu-hours needs --gpu \(e\.g\. --gpu h100\)"):
        plan(None, budget_gpu_hours=10)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget_flops": 0}, "plan: --budget-flops must be positive, got 0"),
        ({"budget_flops": -1e20}, "plan: --budget-flops must be positive, got -1e+20"),
        ({"budget_gpu_hours": -5.0, "gpu": "h100"}, "plan: --budget-gpu-hours must be positive, got -5.0"),
    ],
)
def test_a_budget_must_be_positive(kwargs, message):
    with pytest.raises(PretrainError) as info:
        plan(None, **kwargs)
    assert str(info.value) == message


def test_an_unknown_gpu_is_an_error_listing_the_known_ones():
    with pytest.raises(PretrainError, match=r"unknown GPU 'tpu9000'; known: a100, "):
        plan(None, budget_flops=1e21, gpu="tpu9000")


# ---------------------------------------------------------------------------------------------- a recipe
def test_the_recipes_plan_is_a_table_of_plan_recipes_figures(tiny, capsys):
    recipe = tiny()
    p = plan_recipe(recipe)
    text = printed(capsys, recipe)
    assert text.splitlines()[0] == "plan for tiny (llama)"
    table = rows(text)
    assert list(table) == [
        "parameters",
        "vocab",
        "data mix",
        "tokens",
        "tokens / param",
        "launch",
        "training FLOPs",
        "memory / device",
        "GPU-hours",
        "forecast",
    ]
    assert table["parameters"] == f"{p['params']:,} (1.38M); non-embedding {p['non_embedding_params']:,}"
    assert table["tokens"] == f"{p['tokens']:,} (1.64M) = {p['steps']:,} steps x {p['global_batch_tokens']:,}"
    assert table["launch"] == "single x 1, grad accum 1"
    assert table["data mix"] == (
        "stdlib_code 0.600, stdlib_docs 0.300, pydoc_topics 0.100 — set by hand (data.sources weights)"
    )
    assert table["training FLOPs"].startswith(f"{p['training_flops']:.3g} (6ND alone: {p['flops_6nd']:.3g};")
    assert table["memory / device"].startswith(f"{p['memory_per_device']['total_gb']} GiB = weights ")
    assert table["GPU-hours"].startswith(f"{p['gpu_hours']:.3g} on NVIDIA H100 SXM at 40% MFU -> ")
    assert table["forecast"] == "none (run `pretrain ladder` on this recipe to fit its own scaling law)"


def test_the_json_plan_is_plan_recipes_dict(tiny, capsys):
    recipe = tiny()
    text = printed(capsys, recipe, as_json=True)
    assert json.loads(text) == json.loads(json.dumps(plan_recipe(recipe)))


def test_gpu_and_mfu_options_override_the_recipes_plan_section(tiny, capsys):
    recipe = tiny()
    p = json.loads(printed(capsys, recipe, as_json=True, gpu="a100", mfu=0.25))
    assert p["hardware"]["gpu"] == "NVIDIA A100 SXM" and p["hardware"]["mfu"] == 0.25
    assert "on NVIDIA A100 SXM at 25% MFU" in printed(capsys, recipe, gpu="a100", mfu=0.25)


def test_the_cost_is_shown_only_with_a_price(tiny, capsys):
    assert ", $" in rows(printed(capsys, tiny()))["GPU-hours"]  # the tiny recipe prices a GPU-hour at $3
    assert "$" not in rows(printed(capsys, tiny("plan.usd_per_gpu_hour=null")))["GPU-hours"]


def test_large_costs_are_whole_dollars_with_thousands_separators(tiny, capsys):
    recipe = tiny("plan.usd_per_gpu_hour=1000000000.0")
    usd = plan_recipe(recipe)["usd"]
    assert usd >= 100
    assert rows(printed(capsys, recipe))["GPU-hours"].endswith(f", ${usd:,.0f}")


def test_small_costs_keep_two_significant_digits(tiny, capsys):
    recipe = tiny()
    usd = plan_recipe(recipe)["usd"]
    assert usd < 100
    assert rows(printed(capsys, recipe))["GPU-hours"].endswith(f", ${usd:.2g}")


def test_a_plan_that_does_not_fit_the_gpu_says_so(tiny, capsys):
    recipe = tiny("train.micro_batch_size=4096", "train.global_batch_tokens=1048576")
    assert plan_recipe(recipe, gpu="l4")["fits_in_memory"] is False
    assert rows(printed(capsys, recipe, gpu="l4"))["memory / device"].endswith(
        "(exceeds 24 GB: shard or checkpoint)"
    )
    assert "exceeds" not in rows(printed(capsys, tiny()))["memory / device"]


def test_with_a_ladder_fit_the_plan_shows_the_forecast_and_the_fits_view(tiny, capsys):
    recipe = tiny()
    write_fit(recipe)
    p = plan_recipe(recipe)
    text = printed(capsys, recipe)
    loss = p["predicted_loss"]
    assert rows(text.split("\nunder this")[0])["forecast"] == (
        f"final val loss {loss['value']:.4f} [{loss['low']:.4f}, {loss['high']:.4f}] nats/token"
    )
    assert f"under this recipe's ladder fit, for {p['ladder']['budget_flops']:.3g} FLOPs" in text


# ---------------------------------------------------------------------------------------------- a budget
def test_a_budget_without_a_recipe_is_chinchillas_proposal(capsys):
    text = printed(capsys, None, budget_flops=1e21)
    p = propose(1e21, None, "h100", 0.4)
    lines = text.splitlines()
    assert lines[0] == f"budget 1e+21 FLOPs (= {p['gpu_hours']:.4g} GPU-hours on NVIDIA H100 SXM at 40% MFU)"
    assert lines[1].startswith(
        "  compute-optimal: 2.89B parameters trained on 57.7B tokens [Hoffmann et al. 2022"
    )
    s = p["shape"]
    assert lines[2].startswith(
        f"  proposed llama shape: {s['num_hidden_layers']} layers x {s['hidden_size']} hidden"
    )
    assert lines[3] == f"  exact parameters of that shape: {p['shape_params']:,} -> train on 57.7B tokens"


def test_a_gpu_hour_budget_is_priced_on_the_gpu_given(capsys):
    p = json.loads(printed(capsys, None, budget_gpu_hours=1000, gpu="a100", mfu=0.5, as_json=True))
    assert p == json.loads(json.dumps(propose(None, 1000, "a100", 0.5)))
    assert p["budget_flops"] == pytest.approx(1000 * 3600 * 312e12 * 0.5)


def test_a_budget_with_a_recipe_without_a_fit_is_the_generic_proposal(tiny, capsys):
    text = printed(capsys, tiny(), budget_flops=1e21)
    assert text.startswith("budget 1e+21 FLOPs") and "proposed llama shape" in text


def test_a_budget_with_a_recipe_without_a_fit_assumes_the_recipes_hardware(tiny, capsys):
    p = json.loads(printed(capsys, tiny("plan.gpu=a100", "plan.mfu=0.3"), budget_flops=1e21, as_json=True))
    assert (p["gpu"], p["mfu"]) == ("NVIDIA A100 SXM", 0.3)


def test_a_budget_with_a_recipes_fit_is_the_fits_view_of_that_budget(tiny, capsys):
    recipe = tiny("plan.usd_per_gpu_hour=null")
    write_fit(recipe)
    text = printed(capsys, recipe, budget_flops=1e15)
    f = forecast_plan(recipe, Forecast.load(recipe.layout), 1e15, None, None)
    lines = text.splitlines()
    assert lines[0] == "under this recipe's ladder fit, for 1e+15 FLOPs (6·N·D, N non-embedding):"
    table = rows(text)
    assert list(table) == ["law", "compute-optimal", "Chinchilla", "proposed shape", "predicted loss", "cost"]
    assert table["law"] == f"L = 1.8 + 400/N^0.340 + 400/D^0.280  ({recipe.layout.ladder_fit})"
    assert table["Chinchilla"] == "2.89M params on 57.7M tokens = 20 tokens/param"
    shape = f["shape"]
    assert table["proposed shape"].startswith(
        f"{shape['num_hidden_layers']} layers x {shape['hidden_size']} hidden"
    )
    loss = f["predicted_loss"]
    assert (
        table["predicted loss"] == f"{loss['value']:.4f} [{loss['low']:.4f}, {loss['high']:.4f}] nats/token"
    )
    assert table["cost"].endswith("at 40% MFU (set plan.usd_per_gpu_hour for dollars)")


def test_the_fits_view_as_json_is_forecast_plans_dict(tiny, capsys):
    recipe = tiny()
    write_fit(recipe)
    p = json.loads(printed(capsys, recipe, budget_flops=1e15, as_json=True))
    assert p == json.loads(json.dumps(forecast_plan(recipe, Forecast.load(recipe.layout), 1e15, None, None)))
    assert p["usd"] == pytest.approx(3.0 * p["gpu_hours"])


def test_a_gpu_hour_budget_with_a_fit_is_converted_at_the_recipes_mfu(tiny, capsys):
    recipe = tiny("plan.mfu=0.5")
    write_fit(recipe)
    p = json.loads(printed(capsys, recipe, budget_gpu_hours=1.0, gpu="h100", as_json=True))
    assert p["budget_flops"] == pytest.approx(3600 * 989e12 * 0.5)
