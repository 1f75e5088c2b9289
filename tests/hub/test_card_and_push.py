"""Model card and push dry run: the card parses as a Hub card; only safetensors/configs/tokenizer/card go up."""

from __future__ import annotations

import importlib.metadata
from argparse import Namespace

import pytest
from huggingface_hub import ModelCard

from pretrain.hub.card import write_model_card
from pretrain.hub.command import run_push_command


@pytest.fixture(scope="module")
def final(make_run, tmp_path_factory):
    from pretrain.evaluation.report import summarize_run
    from pretrain.testing import run_train_stage

    out = tmp_path_factory.mktemp("hubrun") / "run"
    recipe = make_run(out, "train.tokens=4096", "eval.every_fraction=0.5")
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
    assert any(r["dataset"]["name"] == "val_bpb" for r in results)
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
    # no placeholder link: the card names the package and version that trained the model
    assert "https://github.com/)" not in text
    assert f"pretraining-handbook {importlib.metadata.version('pretraining-handbook')}" in text


def test_dry_run_lists_no_pickles_or_trainer_state(final, tmp_path, capsys):
    _, out = final
    ckpt = sorted((out / "checkpoints").glob("step-*"))[-1]
    dest = tmp_path / "upload"
    args = Namespace(
        checkpoint=ckpt,
        repo_id="me/tiny",
        revision="step-0000008",
        private=None,
        dry_run=dest,
        include_optimizer=False,
        recipe=None,
        overrides=[],
        output_dir=None,
    )
    assert run_push_command(args) == 0
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert "model.safetensors" in files and "README.md" in files and "tokenizer.json" in files
    assert not [
        f for f in files if f.endswith((".pt", ".bin", ".pkl", ".pickle")) or f.startswith("trainer_state")
    ]
    assert "STAGE.json" not in files
