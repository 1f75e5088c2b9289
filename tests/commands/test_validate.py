"""`pretrain validate RECIPE...`: `ok:` per valid recipe on stdout, `error:` per problem of the others on stderr,
a count of the invalid ones, exit status 1 when any is invalid."""

from __future__ import annotations

import yaml

from pretrain.commands.validate import validate


def broken_copy(tiny_recipe_path, folder, **changes):
    """The tiny recipe (with its accelerate config) copied into `folder`, with top-level `changes`."""
    raw = yaml.safe_load(tiny_recipe_path.read_text())
    raw["accelerate_config"] = str((tiny_recipe_path.parent / raw["accelerate_config"]).resolve())
    for section, values in changes.items():
        raw[section] = {**raw.get(section, {}), **values}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_valid_recipe_is_ok_with_its_name_model_and_sources(tiny_recipe_path, capsys):
    assert validate([tiny_recipe_path]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"ok: {tiny_recipe_path} (tiny: llama, 3 sources)\n"
    assert captured.err == ""


def test_every_problem_of_an_invalid_recipe_is_an_error_line(tiny_recipe_path, tmp_path, capsys):
    path = broken_copy(tiny_recipe_path, tmp_path, train={"seq_len": 0, "sequence_len": 3})
    assert validate([path]) == 1
    captured = capsys.readouterr()
    errors = captured.err.splitlines()
    assert captured.out == ""
    assert errors[-1] == "1 of 1 recipe(s) invalid"
    assert len(errors) == 3 and all(line.startswith(f"error: {path}: ") for line in errors[:-1])
    assert any("train.seq_len" in line for line in errors) and any(
        "'sequence_len'" in line for line in errors
    )


def test_valid_and_invalid_recipes_are_all_reported(tiny_recipe_path, tmp_path, capsys):
    bad = broken_copy(tiny_recipe_path, tmp_path, hub={"push_checkpoints": True})
    missing = tmp_path / "missing.yaml"
    assert validate([tiny_recipe_path, bad, missing]) == 1
    captured = capsys.readouterr()
    assert captured.out == f"ok: {tiny_recipe_path} (tiny: llama, 3 sources)\n"
    assert captured.err.splitlines() == [
        f"error: {bad}: hub.push_checkpoints: needs hub.repo_id to be set",
        f"error: {missing}: file not found (check the path)",
        "2 of 3 recipe(s) invalid",
    ]


def test_overrides_apply_to_every_recipe(tiny_recipe_path, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    path = broken_copy(tiny_recipe_path, copy)
    assert validate([tiny_recipe_path, path], overrides=["train.seq_len=0"]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert errors[-1] == "2 of 2 recipe(s) invalid"
    assert sum("train.seq_len" in line for line in errors) == 2


def test_an_override_can_make_an_invalid_recipe_valid(tiny_recipe_path, tmp_path, capsys):
    path = broken_copy(tiny_recipe_path, tmp_path, hub={"push_checkpoints": True})
    assert validate([path], overrides=["hub.repo_id=me/tiny"]) == 0
    assert capsys.readouterr().out == f"ok: {path} (tiny: llama, 3 sources)\n"


def test_a_shipped_recipe_name_is_validated_like_its_file(capsys):
    assert validate(["tiny"]) == 0
    assert capsys.readouterr().out.startswith("ok: tiny (tiny: llama, 3 sources)")


def test_validating_with_an_output_dir_creates_nothing(tiny_recipe_path, tmp_path, capsys):
    assert validate([tiny_recipe_path], output_dir=str(tmp_path / "out")) == 0
    assert not (tmp_path / "out").exists()  # validating creates nothing
