"""Stage bookkeeping: fingerprints follow exactly the inputs a stage reads; outputs appear atomically."""

from __future__ import annotations

import pytest

from pretrain.cli import build_parser, main
from pretrain.commands import run as pipeline
from pretrain.commands.stage_commands import STAGE_COMMANDS, CliOption, StageCommand
from pretrain.commands.stages import (
    STAGES,
    Stage,
    fingerprint,
    is_current,
    require_current,
    stage_output,
    stage_path,
)
from pretrain.config import load_recipe
from pretrain.core.errors import StageError
from pretrain.core.markers import read_marker


@pytest.fixture()
def recipe(tiny_recipe_path, tmp_path):
    return load_recipe(tiny_recipe_path, output_dir=str(tmp_path / "run"))


def _with(tiny_recipe_path, tmp_path, *overrides):
    return load_recipe(tiny_recipe_path, overrides=list(overrides), output_dir=str(tmp_path / "run"))


def test_changes_rerun_exactly_the_affected_stages(tiny_recipe_path, tmp_path):
    base = _with(tiny_recipe_path, tmp_path)
    cases = {
        "train.optimizer.lr=0.001": {"train"},
        "tokenizer.vocab_size=2048": {"tokenizer", "pack", "train"},
        "data.sources.0.weight=0.7": {"curate", "tokenizer", "pack", "train"},
        "model.num_hidden_layers=2": {"train"},
        "eval.limit=5": {"train"},
        "hub.private=false": set(),
        "data.val_fraction=0.05": {"pack", "train"},
        "data.workers=1": set(),
    }
    for override, expected in cases.items():
        changed = _with(tiny_recipe_path, tmp_path, override)
        stale = {
            s
            for s in ("curate", "tokenizer", "pack", "train")
            if fingerprint(base, s) != fingerprint(changed, s)
        }
        assert stale == expected, override


def test_local_file_change_invalidates_curation(tiny_recipe_path, tmp_path):
    data = tmp_path / "corpus.txt"
    data.write_text("hello world\n" * 10)
    over = [
        f'data.sources=[{{name: mine, type: local, paths: ["{data}"], weight: 1.0}}]',
    ]
    a = _with(tiny_recipe_path, tmp_path, *over)
    fp = fingerprint(a, "curate")
    data.write_text("changed text\n" * 11)
    assert fingerprint(_with(tiny_recipe_path, tmp_path, *over), "curate") != fp


def test_marker_and_require_current(recipe):
    out = stage_path(recipe, "curate")
    with pytest.raises(StageError, match="run `pretrain curate"):
        require_current(recipe, "curate", needed_by="pretrain tokenizer")
    summary = stage_output(recipe, "curate").publish(
        lambda tmp: (tmp / "part-00000.jsonl").write_text("{}\n") and {"docs": 1}
    )
    assert is_current(recipe, "curate")
    assert read_marker(out)["summary"] == summary and summary["docs"] == 1
    assert require_current(recipe, "curate", needed_by="x") == out


# ---------------------------------------------------------------- the registry drives everything
@pytest.fixture()
def fake_registry(monkeypatch):
    """Replace the registry with two toy stages: `draft` -> `polish` (polish has a `--shine` option)."""
    ran: list[tuple[str, dict]] = []

    def draft(recipe, out, **options):
        ran.append(("draft", options))
        return out.publish(lambda tmp: (tmp / "draft.txt").write_text(recipe.name) and {"words": 1})

    def polish(recipe, out, shine="dull"):
        ran.append(("polish", {"shine": shine}))
        text = (recipe.layout.root / "draft" / "draft.txt").read_text()
        return out.publish(lambda tmp: (tmp / "polished.txt").write_text(text.upper() + shine) and {})

    fake = {
        "draft": Stage("draft", lambda lay: lay.root / "draft", lambda r: r.seed, lambda r: (), draft),
        "polish": Stage(
            "polish",
            lambda lay: lay.root / "polished",
            lambda r: r.train.optimizer.lr,
            lambda r: ("draft",),
            polish,
        ),
    }
    fake_commands = {  # the command line's side of the two stages (commands/stage_commands.py)
        "draft": StageCommand("draft", "write a draft"),
        "polish": StageCommand(
            "polish",
            "polish the draft",
            options=(CliOption("--shine", "dull", "how much", when_forced="bright"),),
        ),
    }
    saved, saved_commands = dict(STAGES), dict(STAGE_COMMANDS)
    STAGES.clear()
    STAGES.update(fake)
    STAGE_COMMANDS.clear()
    STAGE_COMMANDS.update(fake_commands)
    monkeypatch.setattr(pipeline, "summarize_run", lambda out: None)
    monkeypatch.setattr(pipeline, "write_model_card", lambda recipe, final: final / "README.md")
    try:
        yield ran
    finally:
        STAGES.clear()
        STAGES.update(saved)
        STAGE_COMMANDS.clear()
        STAGE_COMMANDS.update(saved_commands)


def test_registry_drives_cli_run_and_fingerprints(fake_registry, tiny_recipe_path, tmp_path):
    ran = fake_registry
    out = tmp_path / "run"
    # the CLI has one command per registered stage, with the stage's own options
    commands = next(a for a in build_parser()._actions if getattr(a, "choices", None)).choices
    assert {"draft", "polish"} <= set(commands) and not {"curate", "train"} & set(commands)
    assert "--shine" in {o for a in commands["polish"]._actions for o in a.option_strings}
    # a stage command refuses to run before its upstream stage
    assert main(["polish", str(tiny_recipe_path), "--output-dir", str(out)]) == 1
    # `run` runs every registered stage in order; a second `run` skips them all
    recipe = load_recipe(tiny_recipe_path, output_dir=str(out))
    pipeline.run_all(recipe)
    assert [name for name, _ in ran] == ["draft", "polish"]
    assert (out / "polished" / "polished.txt").read_text() == "TINYdull"
    pipeline.run_all(recipe)
    assert len(ran) == 2
    # fingerprints follow each stage's inputs and its upstream stages
    lr = load_recipe(tiny_recipe_path, overrides=["train.optimizer.lr=0.001"], output_dir=str(out))
    seed = load_recipe(tiny_recipe_path, overrides=["seed=7"], output_dir=str(out))
    assert fingerprint(lr, "draft") == fingerprint(recipe, "draft") != fingerprint(seed, "draft")
    assert fingerprint(lr, "polish") != fingerprint(recipe, "polish") != fingerprint(seed, "polish")
    assert is_current(recipe, "polish") and not is_current(seed, "polish")
    # the stage's CLI option reaches its run function; --force passes its forced value through `run`
    assert (
        main(["polish", str(tiny_recipe_path), "--output-dir", str(out), "--force", "--shine", "glossy"]) == 0
    )
    assert (out / "polished" / "polished.txt").read_text() == "TINYglossy"
    pipeline.run_all(recipe, force=True)
    assert ran[-1] == ("polish", {"shine": "bright"})


def test_stage_plans_say_which_stages_run_and_why(tiny_recipe_path, tmp_path):
    from pretrain.commands.stages import changed_inputs, stage_plans

    base = _with(tiny_recipe_path, tmp_path)
    assert [(p.name, p.status) for p in stage_plans(base)] == [
        ("curate", "missing"),
        ("tokenizer", "missing"),
        ("pack", "missing"),
        ("train", "missing"),
    ]
    for name in ("curate", "tokenizer"):  # markers as the stages write them, with the inputs they hashed
        out = stage_output(base, name)
        out.folder.mkdir(parents=True)
        out.write_marker(out.folder)
    plans = {p.name: p for p in stage_plans(_with(tiny_recipe_path, tmp_path, "tokenizer.vocab_size=2048"))}
    assert plans["curate"].status == "current"
    assert (plans["tokenizer"].status, plans["tokenizer"].why) == (
        "stale",
        "tokenizer.vocab_size: 4096 -> 2048",
    )
    assert plans["pack"].status == "missing"
    assert changed_inputs({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 4}) == [
        "a.c: 2 -> 3",
        "d: (unset) -> 4",
    ]
