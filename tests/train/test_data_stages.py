"""Training with train.data_stages: exact resume across the stage boundary, share events, summary and card."""

from __future__ import annotations

import json

import pytest

from pretrain.commands.card import write_model_card
from pretrain.core.errors import DataError
from pretrain.testing import copy_run_up_to, run_train_stage
from pretrain.train.metrics import EVENT_DATA_STAGE, read_records, step_losses

# 24 steps of 512 tokens (SMALL_RUN): stage `main` = steps 0-11, stage `docs` = steps 12-23
STAGES = (
    "train.data_stages=[{name: main, share: 0.5, weights: {stdlib_code: 6, stdlib_docs: 3, pydoc_topics: 1}},"
    " {name: docs, share: 0.5, weights: {stdlib_docs: 3, pydoc_topics: 1}}]"
)


def _stage_events(out):
    return [
        {k: v for k, v in r.items() if k != "time"}
        for r in read_records(out / "metrics.jsonl")
        if r.get("event") == EVENT_DATA_STAGE
    ]


@pytest.fixture(scope="module")
def staged(make_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("staged") / "run"
    recipe = make_run(out, "eval.enabled=false", STAGES)
    run_train_stage(recipe, resume="never")
    return recipe, out


def test_shares_are_logged_at_the_boundary_and_the_end_within_two_percent(staged):
    recipe, out = staged
    events = _stage_events(out)
    assert [(e["step"], e["stage"], e["at"]) for e in events] == [
        (12, "main", "boundary"),
        (24, "main", "end"),
        (24, "docs", "end"),
    ]
    for event, stage in zip(events[1:], recipe.train.data_stages):
        assert event["tokens"] == 12 * 512
        for name, share in stage.weight_shares().items():
            assert abs(event["realised"][name] - share) <= 0.02, event
    assert "stdlib_code" not in events[2]["realised"]  # not read in the docs stage
    summary = json.loads((out / "final" / "STAGE.json").read_text())
    assert [s["stage"] for s in summary["summary"]["data_stages"]] == ["main", "docs"]


def test_resume_before_the_boundary_reproduces_losses_and_shares(staged, fresh_run):
    _, ref_out = staged
    recipe, out = fresh_run("run", "eval.enabled=false", STAGES)
    copy_run_up_to(ref_out, out, 8)
    run_train_stage(recipe, resume="auto")
    assert step_losses(out / "metrics.jsonl") == step_losses(ref_out / "metrics.jsonl")
    assert _stage_events(out) == _stage_events(ref_out)


def test_the_model_card_tabulates_the_realised_shares(staged):
    recipe, out = staged
    text = write_model_card(recipe, out / "final").read_text()
    assert "### Data stages" in text
    docs_row = next(line for line in text.splitlines() if line.startswith("| docs |"))
    assert "| 6,144 |" in docs_row and "(75.0%)" in docs_row and "–" in docs_row
    # where the training mix came from (the last stage's weights), and each source's own final val bits/byte
    assert (
        "Training mix: stdlib_docs 75.0%, pydoc_topics 25.0%. Where the weights came from: set by hand"
        in text
    )
    per_source = next(
        line for line in text.splitlines() if line.startswith("| final validation per source |")
    )
    assert "stdlib_code" in per_source and "stdlib_docs" in per_source


def test_stages_on_tokens_without_per_source_shards_fail_before_training(fresh_run):
    recipe, out = fresh_run("run", "eval.enabled=false", STAGES)
    manifest = json.loads((out / "tokens" / "manifest.json").read_text())
    for source in manifest["sources"].values():
        source.pop("shards")
    (out / "tokens" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"manifest.json: train.data_stages needs per-source token shards"):
        run_train_stage(recipe, resume="never")
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()
