"""The recipe schema: strict types, unknown keys, impossible combinations, overrides, error format."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from pretrain.config import load_recipe, validate_recipe
from pretrain.config.base import apply_overrides, parse_override_value
from pretrain.core.errors import RecipeError

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*/config.yaml"))

LINE = re.compile(r"^(?P<file>[^:]+): (?P<key>[^:]+): (?P<problem>.+)$")


@pytest.fixture()
def base_raw(tiny_recipe_path: Path) -> dict:
    raw = yaml.safe_load(tiny_recipe_path.read_text())
    # the copy lives in tmp_path: make the recipe-relative path absolute
    raw["accelerate_config"] = str((tiny_recipe_path.parent / raw["accelerate_config"]).resolve())
    return raw


def _problems(raw: dict, tmp_path: Path) -> list[str]:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    for line in info.value.problems:
        assert LINE.match(line), line
        assert line.startswith(str(path))
    return info.value.problems


def test_tiny_recipe_is_valid(tiny_recipe_path):
    recipe = load_recipe(tiny_recipe_path)
    assert recipe.name == "tiny"
    assert recipe.model.hf_fields["hidden_size"] > 0
    assert recipe.out.name == "tiny"


def test_unknown_key_is_named(base_raw, tmp_path):
    base_raw["train"]["stepz"] = 10
    (line,) = _problems(base_raw, tmp_path)
    assert ": train.stepz: unknown key" in line


def test_unknown_model_field_is_named(base_raw, tmp_path):
    base_raw["model"]["hiden_size"] = 64
    (line,) = _problems(base_raw, tmp_path)
    assert "model.hiden_size" in line and "not a field of the llama config" in line


def test_wrong_type_is_named_with_value(base_raw, tmp_path):
    base_raw["train"]["micro_batch_size"] = "sixteen"
    (line,) = _problems(base_raw, tmp_path)
    assert "train.micro_batch_size: expected an integer, got 'sixteen'" in line


def test_every_problem_reported_at_once(base_raw, tmp_path):
    base_raw["train"]["seq_len"] = -1
    base_raw["seed"] = "x"
    base_raw["eval"]["every_fraction"] = 2.0
    problems = _problems(base_raw, tmp_path)
    keys = {LINE.match(p)["key"] for p in problems}
    assert {"train.seq_len", "seed", "eval.every_fraction"} <= keys


def test_batch_must_divide(base_raw, tmp_path):
    base_raw["train"]["global_batch_tokens"] = 1000
    (line,) = _problems(base_raw, tmp_path)
    assert "not a multiple of micro_batch_size*seq_len" in line


def test_exactly_one_length(base_raw, tmp_path):
    base_raw["train"]["steps"] = 10
    (line,) = _problems(base_raw, tmp_path)
    assert "exactly one of train.tokens, train.steps, train.tokens_per_param" in line


def test_weights_must_be_positive(base_raw, tmp_path):
    base_raw["data"]["sources"][0]["weight"] = 0
    (line,) = _problems(base_raw, tmp_path)
    assert ": data.sources.0.weight: Input should be greater than 0, got 0" in line


def test_vocab_size_comes_from_tokenizer(base_raw, tmp_path):
    base_raw["model"]["vocab_size"] = 1000
    (line,) = _problems(base_raw, tmp_path)
    assert "vocab_size comes from the tokenizer" in line


def test_missing_local_file_is_named(base_raw, tmp_path):
    base_raw["data"]["sources"].append(
        {"name": "mine", "type": "local", "paths": ["nope/*.txt"], "weight": 1.0}
    )
    (line,) = _problems(base_raw, tmp_path)
    index = len(base_raw["data"]["sources"]) - 1
    assert f"data.sources.{index}.paths.0: no file matches 'nope/*.txt'" in line


def test_heads_must_divide_hidden(base_raw, tmp_path):
    base_raw["model"]["num_attention_heads"] = 5
    base_raw["model"]["num_key_value_heads"] = 5
    (line,) = _problems(base_raw, tmp_path)
    assert "model.hidden_size: 128 is not divisible by num_attention_heads=5" in line


def test_world_size_from_accelerate_config(base_raw, tmp_path, repo_root):
    cfg = tmp_path / "acc.yaml"
    cfg.write_text("distributed_type: MULTI_GPU\nnum_processes: 3\nnum_machines: 1\n")
    base_raw["accelerate_config"] = str(cfg)
    (line,) = _problems(base_raw, tmp_path)
    assert "world_size=3" in line


def test_deepspeed_launch_is_refused_with_the_alternative(base_raw, tmp_path):
    cfg = tmp_path / "ds.yaml"
    cfg.write_text("distributed_type: DEEPSPEED\nnum_processes: 1\ndeepspeed_config: {zero_stage: 2}\n")
    base_raw["accelerate_config"] = str(cfg)
    (line,) = _problems(base_raw, tmp_path)
    assert "accelerate_config: DeepSpeed launches are not supported" in line and "fsdp.yaml" in line


def test_yaml_floats_in_exponent_form(tmp_path, base_raw):
    base_raw["train"]["optimizer"]["lr"] = "PLACEHOLDER"
    text = yaml.safe_dump(base_raw).replace("PLACEHOLDER", "3e-4")
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert load_recipe(path).train.optimizer.lr == pytest.approx(3e-4)


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndata: [unclosed\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(path) in str(info.value) and "line" in str(info.value)


def test_overrides_are_typed_and_validated(tiny_recipe_path):
    recipe = load_recipe(tiny_recipe_path, overrides=["train.tokens=8192", "data.sources.1.weight=2.5"])
    assert recipe.train.tokens == 8192 and isinstance(recipe.train.tokens, int)
    assert recipe.data.sources[1].weight == 2.5
    with pytest.raises(RecipeError) as info:
        load_recipe(tiny_recipe_path, overrides=["train.tokens=lots"])
    assert "train.tokens: expected an integer, got 'lots'" in str(info.value)


def test_override_parsing():
    assert parse_override_value("3e-4") == pytest.approx(3e-4)
    assert parse_override_value("true") is True
    assert parse_override_value("[a, b]") == ["a", "b"]
    assert parse_override_value("hello") == "hello"
    with pytest.raises(RecipeError):
        apply_overrides({}, ["noequals"])


def test_output_dir_override(tiny_recipe_path, tmp_path):
    recipe = load_recipe(tiny_recipe_path, output_dir=str(tmp_path / "o"))
    assert recipe.out == tmp_path / "o"


def test_section_hash_tracks_changes(base_raw):
    a = validate_recipe(copy.deepcopy(base_raw), check_files=False)
    base_raw["train"]["optimizer"]["lr"] = 0.001
    b = validate_recipe(base_raw, check_files=False)
    assert a.section_hash("data") == b.section_hash("data")
    assert a.section_hash("train") != b.section_hash("train")


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.parent.name)
@pytest.mark.parametrize("length", ["train.steps=100", "train.tokens=1048576", "train.tokens_per_param=2.5"])
def test_one_length_override_replaces_the_recipes_length(recipe, length):
    """`--set train.steps=100` (the example in every --help) works whichever length key the recipe uses."""
    loaded = load_recipe(recipe, overrides=[length])
    key, value = length.split("=")
    assert getattr(loaded.train, key.split(".")[1]) == float(value)
    assert [k for k in ("tokens", "steps", "tokens_per_param") if getattr(loaded.train, k) is not None] == [
        key.split(".")[1]
    ]


def test_two_length_overrides_are_still_an_error(tiny_recipe_path):
    with pytest.raises(RecipeError, match="set exactly one of train.tokens, train.steps"):
        load_recipe(tiny_recipe_path, overrides=["train.steps=10", "train.tokens=4096"])


@pytest.mark.parametrize(
    ("model", "key", "value"),
    [("gpt_neox", "rotary_pct", 0.25), ("gpt_neox", "rotary_pct", 0.5), ("llama", "rope_theta", 10000.0)],
)
def test_legacy_model_keys_folded_by_the_config_are_accepted(tiny_recipe_path, model, key, value):
    """Legacy keys a config folds into another field (rope_parameters) are fields, even at their default."""
    recipe = load_recipe(tiny_recipe_path, overrides=[f"model={{model_type: {model}, {key}: {value}}}"])
    assert recipe.model.hf_fields[key] == value


def test_unknown_model_key_is_still_an_error(tiny_recipe_path):
    with pytest.raises(RecipeError, match="model.rotary_pcnt: not a field of the gpt_neox config"):
        load_recipe(tiny_recipe_path, overrides=["model={model_type: gpt_neox, rotary_pcnt: 0.25}"])


def test_the_recipe_as_run_validates_from_anywhere(tiny_recipe_path, tmp_path, monkeypatch, capsys):
    """Case 7 of issue #31: `pretrain validate outputs/tiny/recipe.resolved.yaml` said `accelerate_config: file not
    found` — the copy kept paths relative to the original recipe's folder."""
    import yaml

    from pretrain.cli import main
    from pretrain.config import load_recipe
    from pretrain.train.checkpoint import resolved_recipe_yaml

    recipe = load_recipe(tiny_recipe_path, output_dir=str(tmp_path / "run"))
    saved = tmp_path / "run" / "recipe.resolved.yaml"
    saved.parent.mkdir()
    saved.write_text(resolved_recipe_yaml(recipe))
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(saved)]) == 0, capsys.readouterr().err
    again = load_recipe(saved)
    assert again.resolve_path(again.accelerate_config) == recipe.resolve_path(recipe.accelerate_config)
    assert again.out == recipe.out
    as_run = yaml.safe_load(saved.read_text())
    plain = recipe.model_dump(mode="json")
    for key in ("accelerate_config", "output_dir"):
        as_run.pop(key), plain.pop(key)
    assert as_run == plain  # only the paths differ


def test_the_recipe_as_run_is_absolute_when_loaded_by_a_relative_path(
    repo_root, tmp_path, monkeypatch, capsys
):
    """A run started as `pretrain run recipes/tiny/config.yaml` wrote `recipes/tiny/../../accelerate_configs/...`
    (relative to the folder it was started in): the copy validated only from there."""
    from pretrain.cli import main
    from pretrain.config import load_recipe
    from pretrain.train.checkpoint import resolved_recipe_yaml

    monkeypatch.chdir(repo_root)
    recipe = load_recipe("recipes/tiny/config.yaml", output_dir="outputs-relative")
    saved = tmp_path / "recipe.resolved.yaml"
    saved.write_text(resolved_recipe_yaml(recipe))
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(saved)]) == 0, capsys.readouterr().err
    assert load_recipe(saved).out == repo_root / "outputs-relative"
