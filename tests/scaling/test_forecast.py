"""The forecast a ladder leaves: `plan` with the fit, and the train callback that checks each validation."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from types import SimpleNamespace

import numpy as np
import pytest
from transformers import AutoConfig

from pretrain.cli import main
from pretrain.commands.card import write_model_card
from pretrain.config import load_recipe
from pretrain.core.atomic import write_text_atomic
from pretrain.core.markers import StageOutput
from pretrain.modeling import count_parameters
from pretrain.scaling.family import Shape
from pretrain.scaling.fit import fit_scaling_law
from pretrain.scaling.forecast import PHASE_BETWEEN, PHASE_FINAL, PHASE_STABLE, Forecast
from pretrain.scaling.ladder import LadderError, Run
from pretrain.scaling.ladder_record import LadderRecord, RungResult, write_record
from pretrain.scaling.law import ScalingLaw, compute_optimal, predict
from pretrain.scaling.plan import forecast_plan, plan_recipe
from pretrain.train.callbacks.forecast import ForecastCheck
from pretrain.train.metrics import EVENT_FORECAST

FINAL = ScalingLaw(E=2.0, A=80.0, B=400.0, alpha=0.3, beta=0.3)
PEAK = ScalingLaw(E=2.2, A=80.0, B=400.0, alpha=0.3, beta=0.3)  # a run at its peak lr sits above
SIZES, TOKENS = np.geomspace(2e4, 4e5, 4), np.geomspace(1e5, 8e5, 4)
BYTES_PER_TOKEN = 3.0


def _fit(law: ScalingLaw, seed: int):
    n, d = np.repeat(SIZES, TOKENS.size), np.tile(TOKENS, SIZES.size)
    noise = np.exp(np.random.default_rng(seed).normal(0, 0.003, n.size))
    return fit_scaling_law(n, d, law.loss(n, d) * noise, bootstrap=50, seed=seed)


@pytest.fixture(scope="module")
def fits():
    return _fit(FINAL, 0), _fit(PEAK, 1)


def write_ladder(recipe, fits, data_fingerprint=None) -> None:
    final, stable = fits
    layout = recipe.layout
    write_text_atomic(layout.ladder_fit, final.to_json())
    write_text_atomic(layout.ladder_stable_fit, stable.to_json())
    shape = Shape(32, 2, 1, 1, 96)
    run = Run("s0-b0", 0, 0, shape, 150_000, 20_000, 20, 163_840, 1, 14, "s0-b2", None, 2e10)
    write_record(
        layout,
        LadderRecord(
            target={"non_embedding_params": 853120, "tokens": 1638400, "source": "the recipe's run"},
            design={
                "global_batch_tokens": 8192,
                "micro_batch_size": 16,
                "decay_fraction": 0.3,
                "flops": 1e13,
            },
            rungs=[RungResult(run, 6.0, 2.9)],
            bytes_per_token=BYTES_PER_TOKEN,
            data_fingerprint=data_fingerprint,
        ),
    )


@pytest.fixture()
def recipe(tmp_path, fits):
    recipe = load_recipe("recipes/tiny/config.yaml", output_dir=str(tmp_path))
    write_ladder(recipe, fits)
    return recipe


def test_checks_pick_the_law_of_the_phase(recipe, fits):
    forecast = Forecast.load(recipe.layout)
    n, d = 1e5, 4e5
    final = forecast.check(n, d, FINAL.loss(n, d), last_step=True, at_peak_lr=False)
    assert final.phase == PHASE_FINAL and not final.outside
    assert final.predicted == predict(fits[0], n, d)
    stable = forecast.check(n, d, PEAK.loss(n, d), last_step=False, at_peak_lr=True)
    assert stable.phase == PHASE_STABLE and not stable.outside
    # a peak-lr loss is far above the decayed law: outside at the end, fine in the stable phase
    assert forecast.check(n, d, PEAK.loss(n, d), last_step=True, at_peak_lr=False).outside
    between = forecast.check(
        n, d, (FINAL.loss(n, d) + PEAK.loss(n, d)) / 2, last_step=False, at_peak_lr=False
    )
    assert between.phase == PHASE_BETWEEN and not between.outside
    assert forecast.check(n, d, 1.5 * PEAK.loss(n, d), last_step=False, at_peak_lr=False).outside
    assert forecast.bpb(3.0) == pytest.approx(3.0 / np.log(2) / BYTES_PER_TOKEN)


def test_no_fit_or_repacked_tokens_means_no_forecast(tmp_path, fits):
    recipe = load_recipe("recipes/tiny/config.yaml", output_dir=str(tmp_path))
    assert Forecast.load(recipe.layout) is None
    write_ladder(recipe, fits, data_fingerprint="aaaa")
    StageOutput("pack", recipe.layout.tokens, "bbbb", "x").write_marker(_mkdir(recipe.layout.tokens))
    assert Forecast.load(recipe.layout) is None  # the law was fitted on other tokens
    write_ladder(recipe, fits, data_fingerprint="bbbb")
    assert Forecast.load(recipe.layout) is not None


def _mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_plan_adds_the_fits_optimum_shape_loss_and_cost(recipe, fits):
    plan = plan_recipe(recipe)
    non_emb, tokens = plan["non_embedding_params"], plan["tokens"]
    assert plan["predicted_loss"]["value"] == predict(fits[0], non_emb, tokens).value
    assert plan["predicted_bpb"]["value"] == pytest.approx(plan["predicted_loss"]["value"] / np.log(2) / 3.0)
    assert plan["usd"] == pytest.approx(plan["gpu_hours"] * 3.0)  # the tiny recipe's plan.usd_per_gpu_hour
    ladder = plan["ladder"]
    flops = 6.0 * non_emb * tokens
    optimum = compute_optimal(fits[0], flops)
    assert ladder["optimal_non_embedding_params"]["value"] == optimum.params.value
    assert ladder["chinchilla"]["tokens_per_param"] == 20
    assert ladder["chinchilla"]["params"] == pytest.approx((flops / 120) ** 0.5)
    # the proposed shape is of the recipe's family and near the optimum
    assert ladder["shape"]["hidden_size"] % 32 == 0
    assert ladder["shape_non_embedding_params"] == pytest.approx(optimum.params.value, rel=0.5)
    # the budget buys tokens at the recipe's full cost per token, attention included (issue #31: 6·N·D alone
    # overshot the budget by the attention share), so the GPU-hours are the budget's own
    spent_6nd = ladder["shape_tokens"] * 6 * ladder["shape_non_embedding_params"]
    assert spent_6nd < 0.9 * flops  # the rest pays for attention and the LM head (seq 256, hidden 128)
    assert ladder["gpu_hours"] == pytest.approx(flops / (989e12 * recipe.plan.mfu) / 3600)
    assert ladder["usd"] == pytest.approx(ladder["gpu_hours"] * 3.0)
    low, value, high = (ladder["predicted_loss"][k] for k in ("low", "value", "high"))
    assert low <= value <= high
    # the record's one rung: 20,000 non-embedding params on 163,840 tokens
    assert ladder["extrapolation"] == pytest.approx(
        {"params": ladder["shape_non_embedding_params"] / 20_000, "tokens": ladder["shape_tokens"] / 163_840}
    )


def test_plan_command_prints_the_forecast_and_refuses_budgets_below_the_ladder(recipe, capsys):
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["plan", "recipes/tiny/config.yaml", "--output-dir", str(recipe.out)]) == 0
    text = out.getvalue()
    assert "forecast         final val loss" in text and "bits/byte" in text
    assert "under this recipe's ladder fit" in text and "Chinchilla" in text and "$" in text
    assert "x the ladder's largest size" in text and "x its longest run's tokens)" in text
    with redirect_stdout(io.StringIO()):
        code = main(
            ["plan", "recipes/tiny/config.yaml", "--output-dir", str(recipe.out), "--budget-flops", "1e9"]
        )
    assert code == 1
    assert "budget 1e+09 FLOPs is below the ladder's smallest rung" in capsys.readouterr().err
    out = io.StringIO()
    with redirect_stdout(out):
        args = [
            "plan",
            "recipes/tiny/config.yaml",
            "--output-dir",
            str(recipe.out),
            "--budget-flops",
            "1e15",
            "--json",
        ]
        assert main(args) == 0
    assert json.loads(out.getvalue())["budget_flops"] == 1e15


def test_plan_without_a_fit_says_how_to_get_one(tmp_path):
    recipe = load_recipe("recipes/tiny/config.yaml", output_dir=str(tmp_path))
    assert plan_recipe(recipe)["ladder"] is None


class Events:
    def __init__(self):
        self.events = []

    def log_event(self, step, event, **details):
        self.events.append({"step": step, "event": event, **details})


def test_the_train_callback_logs_each_validation_against_the_forecast(recipe, caplog):
    config = AutoConfig.for_model(
        "llama",
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=2,
        vocab_size=512,
    )
    _, non_emb = count_parameters(config)
    accelerator = SimpleNamespace(is_main_process=True, unwrap_model=lambda m: m)
    setup = SimpleNamespace(
        recipe=recipe,
        accelerator=accelerator,
        model=SimpleNamespace(config=config),
        total_steps=100,
        tokens_per_step=8192,
    )
    validation = SimpleNamespace(steps={50, 100}, last={})
    metrics = Events()
    check = ForecastCheck(setup, metrics, validation)
    check.on_train_start(SimpleNamespace(step=0))
    assert check.params == non_emb
    peak = float(PEAK.loss(non_emb, 50 * 8192))
    validation.last = {"val/loss": peak}  # step 50 of a WSD run with decay_fraction 0.3: the stable phase
    check.on_step_end(SimpleNamespace(step=50, tokens_seen=50 * 8192), None)
    validation.last = {"val/loss": peak}  # ... and the same loss at the end: not decayed as forecast
    with caplog.at_level("WARNING", logger="pretrain.train"):
        check.on_step_end(SimpleNamespace(step=100, tokens_seen=100 * 8192), None)
    stable, final = metrics.events
    assert stable["event"] == EVENT_FORECAST and stable["phase"] == "stable" and not stable["outside"]
    assert final["phase"] == "final" and final["outside"] and final["actual"] == peak
    assert "departs from the forecast" in caplog.text
    check.on_step_end(SimpleNamespace(step=60, tokens_seen=60 * 8192), None)  # no validation at 60
    assert len(metrics.events) == 2


def test_a_run_without_a_ladder_is_not_checked(tmp_path):
    recipe = load_recipe("recipes/tiny/config.yaml", output_dir=str(tmp_path))
    setup = SimpleNamespace(recipe=recipe, accelerator=SimpleNamespace(is_main_process=True))
    metrics = Events()
    check = ForecastCheck(setup, metrics, SimpleNamespace(steps={1}, last={"val/loss": 5.0}))
    check.on_train_start(SimpleNamespace(step=0))
    check.on_step_end(SimpleNamespace(step=1, tokens_seen=10), None)
    assert metrics.events == []


def test_budget_below_smallest_rung_is_a_ladder_error(recipe):
    with pytest.raises(LadderError, match="below the ladder's smallest rung"):
        forecast_plan(recipe, Forecast.load(recipe.layout), 1e6, None, None)


def test_card_shows_predicted_vs_actual_and_departures(recipe):
    config = AutoConfig.for_model(
        "llama",
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        vocab_size=4096,
    )
    final_dir = recipe.layout.final
    config.save_pretrained(final_dir)
    records = [
        {"time": 1, "step": 100, "tokens_seen": 819200, "loss": 5.0, "step_time_s": 1.0},
        {
            "time": 2,
            "step": 100,
            "event": EVENT_FORECAST,
            "phase": "stable",
            "actual": 9.9,
            "predicted": 5.2,
            "low": 5.1,
            "high": 5.3,
            "outside": True,
        },
        {"time": 3, "step": 200, "tokens_seen": 1638400, "loss": 4.8, "step_time_s": 1.0},
        {"time": 4, "step": 200, "tokens_seen": 1638400, "val/loss": 4.9, "val/bpb": 2.3},
    ]
    recipe.layout.metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    card = write_model_card(recipe, final_dir).read_text()
    _, non_emb = count_parameters(config)
    expected = predict(Forecast.load(recipe.layout).fit, non_emb, 1638400)
    assert (
        f"| forecast (ladder) | predicted final loss {expected.value:.4f} [{expected.low:.4f}, {expected.high:.4f}], actual 4.9000"
        in card
    )
    assert "| forecast departure | step 100: val loss 9.9000 outside [5.1000, 5.3000] (stable) |" in card
