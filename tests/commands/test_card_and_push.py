"""Model card and push dry run: the card parses as a Hub card; only safetensors/configs/tokenizer/card go up."""

from __future__ import annotations

import importlib.metadata

import pytest
from huggingface_hub import ModelCard

from pretrain.commands.card import write_model_card
from pretrain.commands.push import push


@pytest.fixture(scope="module")
def final(make_run, tmp_path_factory):
    from pretrain.evaluation.report import summarize_run
    from pretrain.testing import run_train_stage

    out = tmp_path_factory.mktemp("hubrun") / "run"
    recipe = make_run(
        out, "train.tokens=4096", "eval.every_fraction=0.5", "eval.tasks=[val_bpb,stdlib_cloze]"
    )
    run_train_stage(recipe, resume="never")
    summarize_run(out)
    write_model_card(recipe, out / "final")
    return recipe, out


def test_card_is_complete(final):
    recipe, out = final
    card = ModelCard.load(out / "final" / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-generation"
    results = data["model-index"][0]["results"]
    metrics = {(r["dataset"]["type"], m["type"]) for r in results for m in r["metrics"]}
    # one result per (task, metric) people read, built-in tasks under their own names; no derived perplexities
    assert metrics == {
        ("val_bpb", "bits_per_byte"),
        ("stdlib_cloze", "acc"),
        ("stdlib_cloze", "acc_norm"),
        ("stdlib_cloze", "rc_bpb"),  # the tiny recipe's eval.rc_bpb: bits/byte of the gold answers
    }
    text = card.text
    for needle in (
        "## Training data",
        "stdlib_code",
        "bytes/token",
        "FLOPs",
        "loss_curve.png",
        "learning_curves.png",
        "LoraConfig",
        "base model",
        "| hardware | 1 x CPU",
    ):
        assert needle in text, needle
    assert (out / "final" / "loss_curve.png").exists() and (out / "final" / "learning_curves.png").exists()
    assert "perplexity" not in card.content
    # where each source came from: origin, version, licence, tokens
    assert "### Training data provenance" in text
    assert "| stdlib_code | builtin:python_stdlib_code | Python 3." in text and "| PSF-2.0 |" in text
    # the precision that ran (`auto` resolves to fp32 on a CPU), not the recipe's `auto`
    assert "| precision | fp32 (`auto` on this hardware) |" in text
    assert '"precision": "fp32"' in (out / "metrics.jsonl").read_text()
    # the two bits-per-byte figures, each said what it measures
    assert "Two bits-per-byte numbers describe this model" in text
    assert "The final validation is the training loop's own measure" in text
    # the built-in cloze task: local data, chance 1/4 from its 4 choices
    assert "| stdlib_cloze | local (built-in) | test | 0 | 0.250 |" in text
    # no placeholder link: the card names the package and version that trained the model
    assert "https://github.com/)" not in text
    assert f"pretraining-handbook {importlib.metadata.version('pretraining-handbook')}" in text


def test_dry_run_lists_no_pickles_or_trainer_state(final, tmp_path, capsys):
    _, out = final
    ckpt = sorted((out / "checkpoints").glob("step-*"))[-1]
    dest = tmp_path / "upload"
    before = {p: p.read_bytes() for p in ckpt.rglob("*") if p.is_file()}
    assert push(ckpt, repo_id="me/tiny", revision="step-0000008", dry_run=dest) == 0
    # the dry run renders the card into its copy: the folder itself is left as it was (it used to get a README)
    assert {p: p.read_bytes() for p in ckpt.rglob("*") if p.is_file()} == before
    assert "me/tiny" in (dest / "README.md").read_text()
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert "model.safetensors" in files and "README.md" in files and "tokenizer.json" in files
    assert not [
        f for f in files if f.endswith((".pt", ".bin", ".pkl", ".pickle")) or f.startswith("trainer_state")
    ]
    assert "STAGE.json" not in files


def test_the_card_prices_the_gpu_hours_as_the_plan_does(final):
    """#31: the dollar breakdown of `pretrain plan` in the card too. A CPU run has no GPU-hours, so no cost row."""
    from pretrain.commands.card import card_context, render_card, template_path
    from pretrain.config.plan import PlanConfig
    from pretrain.scaling.cost import cost_of

    recipe, out = final
    context = card_context(recipe, out / "final")
    assert context["gpu_hours"] is None and context["cost"] is None
    assert "| cost |" not in render_card(recipe, template_path(recipe), context)
    plan = PlanConfig(usd_per_gpu_hour=2.5, engineering_usd=1000)
    context.update(gpu_hours=12.0, cost=cost_of(plan, 12.0).as_dict())
    text = render_card(recipe, template_path(recipe), context)
    assert "| cost | GPU rental ($2.5 per GPU-hour): $30; engineering: $1,000; total $1,030 " in text
