"""The ladder's report (`ladder/report.md`): its rungs, the fitted law with intervals, the compute optimum, the
forecast of the target and the backtest; and the loss-against-compute plot."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pretrain.core.layout import RunLayout
from pretrain.scaling.ladder import Run, Shape
from pretrain.scaling.ladder_record import LadderRecord, RungResult
from pretrain.scaling.ladder_report import report_markdown, write_plot, write_report
from pretrain.scaling.law import ScalingFit, ScalingLaw, compute_optimal, predict

RECIPE = SimpleNamespace(name="tiny")
LAW = ScalingLaw(E=1.8, A=400.0, B=400.0, alpha=0.34, beta=0.28)
BOOTSTRAP = [
    ScalingLaw(E=1.7, A=380.0, B=390.0, alpha=0.33, beta=0.27),
    ScalingLaw(E=1.9, A=420.0, B=410.0, alpha=0.35, beta=0.29),
]


def fit(law: ScalingLaw = LAW) -> ScalingFit:
    return ScalingFit(law, BOOTSTRAP, [1e4, 1e5], [1e6, 1e6], [3.4, 3.0], objective=0.001)


def run(name: str, size: int, hidden: int, params: int, tokens: int, branch_of: str | None = None) -> Run:
    shape = Shape(hidden, 2, 2, 1 if size else None, 4 * hidden)
    return Run(
        name=name,
        size=size,
        budget=0 if branch_of else 1,
        shape=shape,
        params=params + 1000,
        non_embedding_params=params,
        steps=tokens // 1000,
        tokens=tokens,
        warmup_steps=2,
        decay_start=40 if branch_of else 80,
        branch_of=branch_of,
        checkpoint_every=20 if branch_of is None else None,
        flops=6.0 * params * tokens,
    )


def record(**changes) -> LadderRecord:
    rungs = [
        RungResult(run("s0-b1", 0, 16, 10_000, 100_000), 3.5123, 2.1, 10.0),
        RungResult(run("s0-b0", 0, 16, 10_000, 50_000, branch_of="s0-b1"), 3.7, None, 5.0),
        RungResult(run("s1-b1", 1, 32, 40_000, 100_000), 3.2, 1.9, 20.0),
    ]
    fields = dict(
        target={"non_embedding_params": 853_120, "tokens": 1_638_400, "source": "recipe"},
        design={"global_batch_tokens": 1000, "micro_batch_size": 4, "decay_fraction": 0.3, "flops": 4.2e12},
        rungs=rungs,
        bytes_per_token=None,
        seconds=125.0,
        launcher="local, sequential",
    )
    return LadderRecord(**{**fields, **changes})


def report(tmp_path, rec=None, law=LAW, stable=None) -> str:
    return report_markdown(RECIPE, fit(law), stable, rec or record(), RunLayout(tmp_path))


def test_the_report_names_the_recipe_the_runs_the_sizes_and_the_cost(tmp_path):
    lines = report(tmp_path).splitlines()
    assert lines[0] == "# Scaling-law ladder of `tiny`"
    assert lines[2].startswith(
        "3 runs of 2 sizes of the recipe's model family, trained on the recipe's own mix, tokenizer and packed "
        "tokens (local, sequential; 2m05s of training wall time, 4.2e+12 training FLOPs)."
    )
    assert (
        lines[3] == "Target: recipe: 853K non-embedding parameters on 1.64M tokens (8.39e+12 FLOPs as 6ND)."
    )


def test_each_rung_is_a_row_saying_whether_it_branched(tmp_path):
    text = report(tmp_path)
    assert (
        "| s0-b1 | 2 layers x 16 hidden, 2 heads, mlp 64 | 10,000 | 100 | 100,000 | 10.0 | long run | 3.5123 | 2.1000 |"
        in text
    )
    assert (
        "| s0-b0 | 2 layers x 16 hidden, 2 heads, mlp 64 | 10,000 | 50 | 50,000 | 5.0 | branch of s0-b1 at step 40 | 3.7000 | n/a |"
        in text
    )
    assert "| s1-b1 | 2 layers x 32 hidden, 2 heads (1 kv), mlp 128 | 40,000 |" in text


def test_the_fit_table_has_each_parameter_its_interval_and_chinchillas_value(tmp_path):
    text = report(tmp_path)
    f = fit()
    for name, chinchilla in (("E", 1.69), ("A", 406.4), ("B", 410.7), ("alpha", 0.34), ("beta", 0.28)):
        e = f.intervals[name]
        assert f"| {name} | {e.value:.4g} | [{e.low:.4g}, {e.high:.4g}] | {chinchilla} |" in text
    assert "2 bootstrap refits; intervals 5–95 %)." in text


def test_parameters_on_the_fits_bounds_are_flagged(tmp_path):
    assert "On the fit's bounds" not in report(tmp_path)
    on_bound = ScalingLaw(E=1.8, A=400.0, B=400.0, alpha=2.0, beta=0.28)
    assert "On the fit's bounds (not determined by these rungs): alpha;" in report(tmp_path, law=on_bound)


def test_the_compute_optimum_and_the_forecast_are_at_the_targets_budget(tmp_path):
    text = report(tmp_path)
    c = 6.0 * 853_120 * 1_638_400
    optimum, forecast = compute_optimal(fit(), c), predict(fit(), 853_120, 1_638_400)
    tpp = optimum.tokens_per_param
    assert f"Compute-optimal at the target's {c:.3g} FLOPs: " in text
    assert f"{tpp.value:.3g} [{tpp.low:.3g}, {tpp.high:.3g}] tokens per parameter (Chinchilla: 20)." in text
    assert (
        f"Forecast of the target's final validation loss: {forecast.value:.4g} [{forecast.low:.4g}, "
        f"{forecast.high:.4g}] nats/token." in text
    )


def test_the_forecast_is_also_in_bits_per_byte_when_the_bytes_per_token_are_known(tmp_path):
    rec = record(bytes_per_token=3.0)
    forecast = predict(fit(), 853_120, 1_638_400)
    text = report(tmp_path, rec)
    assert (
        f"nats/token, {rec.bpb(forecast.value):.4f} [{rec.bpb(forecast.low):.4f}, {rec.bpb(forecast.high):.4f}] "
        "bits/byte." in text
    )


def test_the_all_parameters_view_is_shown_when_recorded(tmp_path):
    assert "Counting all parameters" not in report(tmp_path)
    view = {
        "params": 1_377_408,
        "law": {"E": 1.5, "A": 300.0, "B": 350.0, "alpha": 0.3, "beta": 0.25},
        "tokens_per_param": {"value": 12.0, "low": 10.0, "high": 15.0},
        "forecast": {"value": 3.9, "low": 3.8, "high": 4.0},
    }
    target = {**record().target, "all_params_view": view}
    text = report(tmp_path, record(target=target))
    assert "Counting all parameters (embeddings too, Chinchilla's convention; the target has 1.38M): " in text
    assert "L = 1.5 + 300/N^0.300 + 350/D^0.250, compute-optimal at 12 [10, 15] tokens per parameter" in text
    assert "forecast 3.9000 [3.8000, 4.0000]." in text


def test_the_backtest_gives_the_relative_miss(tmp_path):
    assert "Backtest" not in report(tmp_path)
    backtest = {
        "params": 40_000,
        "tokens": 100_000,
        "actual": 3.2,
        "predicted": 3.28,
        "low": 3.1,
        "high": 3.4,
    }
    text = report(tmp_path, record(backtest=backtest))
    assert (
        "its longest run (40K params, 100K tokens) at 3.2800 [3.1000, 3.4000]; it reached 3.2000 (+2.5 %)."
        in text
    )


def test_the_peak_lr_law_is_shown_when_there_is_one(tmp_path):
    assert "Peak-lr law" not in report(tmp_path)
    stable = ScalingFit(LAW, [], [1e4, 1e5, 1e6], [1e6] * 3, [3.6, 3.3, 3.1], objective=0.0)
    text = report(tmp_path, stable=stable)
    assert (
        "Peak-lr law (long runs' validations before their decay, 3 points), used to check a run mid-way: "
        in text
    )
    assert "L = 1.8 + 400/N^0.340 + 400/D^0.280." in text


def test_the_report_links_the_plot_next_to_it(tmp_path):
    assert report(tmp_path).endswith("![loss vs compute](loss_vs_compute.png)\n")


def test_write_report_writes_the_markdown_into_the_ladder_folder(tmp_path):
    layout = RunLayout(tmp_path)
    path = write_report(RECIPE, fit(), None, record(), layout)
    assert path == layout.ladder_report == tmp_path / "ladder" / "report.md"
    assert path.read_text() == report(tmp_path)


@pytest.mark.filterwarnings("ignore")
def test_the_plot_is_a_png_image(tmp_path):
    path = tmp_path / "ladder" / "loss_vs_compute.png"
    write_plot(fit(), record(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
