"""`pretrain explain KEY`: type, default and description of a recipe key; unknown keys are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pretrain.cli import main
from pretrain.config import load_recipe
from pretrain.config.explain import all_keys, explain, resolve, split_key

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*/config.yaml"))


def _explain(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["explain", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_leaf_key_prints_type_default_and_description(capsys):
    code, out, err = _explain(capsys, "train.optimizer.lr")
    assert code == 0 and not err
    assert out.splitlines()[0] == "train.optimizer.lr"
    assert "type:     number" in out
    assert "allowed:  > 0" in out
    assert "default:  0.003" in out
    assert "peak learning rate" in out


@pytest.mark.parametrize("key", ["data.sources.0.weight", "data.sources[].weight", "data.sources[0].weight"])
def test_list_item_keys_by_index_or_brackets(capsys, key):
    code, out, _ = _explain(capsys, key)
    assert code == 0
    assert "default:  required" in out and "share of the mix" in out


def test_key_of_one_union_member_says_which(capsys):
    code, out, _ = _explain(capsys, "data.sources[].doc_split")
    assert code == 0
    assert "[type: local]" in out
    assert '"file" | "line" | "paragraph"' in out and "default:  file" in out


def test_section_lists_its_keys(capsys):
    code, out, _ = _explain(capsys, "train.schedule")
    assert code == 0
    assert "keys of train.schedule:" in out
    for name in ("name", "warmup_steps", "warmup_fraction", "decay_fraction", "min_lr_ratio"):
        assert f"\n  {name}: " in out


def test_no_key_lists_the_top_level_sections(capsys):
    code, out, _ = _explain(capsys)
    assert code == 0
    for name in ("data", "tokenizer", "model", "train", "eval", "hub", "plan"):
        assert f"\n  {name}: section" in out


def test_recipe_value_is_shown(capsys, tiny_recipe_path):
    code, out, _ = _explain(capsys, "data.sources[].weight", "--recipe", str(tiny_recipe_path))
    assert code == 0
    assert "data.sources.0.weight = 0.6" in out and "data.sources.2.weight = 0.1" in out
    code, out, _ = _explain(capsys, "train.optimizer.lr", "--recipe", str(tiny_recipe_path))
    assert "train.optimizer.lr = 0.006" in out  # the recipe's value, not the default (0.003)


def test_model_field_of_the_transformers_config(capsys, tiny_recipe_path):
    code, out, _ = _explain(capsys, "model.hidden_size", "--recipe", str(tiny_recipe_path))
    assert code == 0
    assert "transformers LlamaConfig" in out and "model.hidden_size = 128" in out


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("train.lr", "train.optimizer.lr"),
        ("train.optimzer.lr", "train.optimizer.lr"),
        ("data.sources.weight", "data.sources[].weight"),
        ("model.hiden_size", "model.hidden_size"),
    ],
)
def test_unknown_key_is_an_error_with_close_matches(capsys, key, suggestion):
    code, out, err = _explain(capsys, key)
    assert code == 1 and not out
    assert err.startswith(f"error: explain: unknown recipe key {key!r}")
    assert suggestion in err
    assert "Traceback" not in err


def test_every_schema_key_resolves():
    keys = all_keys()
    assert "train.optimizer.no_decay" in keys and "data.sources[].encoding_errors" in keys
    for key in keys:
        assert resolve(key), key


def test_split_key_spellings_agree():
    assert (
        split_key("data.sources[3].paths")
        == split_key("data.sources.3.paths")
        == ["data", "sources", "3", "paths"]
    )
    assert split_key("data.sources[].paths") == ["data", "sources", "[]", "paths"]


def _dotted_keys(node, prefix: str = "") -> list[str]:
    """Every key a raw recipe sets, dotted, list items by index."""
    keys = []
    if isinstance(node, dict):
        for name, value in node.items():
            key = f"{prefix}.{name}" if prefix else name
            keys += [key, *_dotted_keys(value, key)]
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, dict):
                keys += _dotted_keys(item, f"{prefix}.{i}")
    return keys


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.parent.name)
def test_every_key_a_shipped_recipe_sets_is_explained(recipe):
    loaded = load_recipe(recipe)
    for key in _dotted_keys(yaml.safe_load(recipe.read_text())):
        text = explain(key, loaded)
        assert text.startswith(key) and "(no description)" not in text, key


@pytest.mark.parametrize(
    ("key", "listed"), [("data.sources[]", "keys of data.sources[]:"), ("train.data_stages[]", "  weights: ")]
)
def test_a_list_item_is_explained_as_the_list_and_its_keys(capsys, key, listed):
    # `explain 'data.sources[]'` and `'train.data_stages[]'` were an IndexError traceback
    code, out, err = _explain(capsys, key)
    assert code == 0 and not err
    assert out.splitlines()[0] == key.removesuffix("[]")
    assert listed in out


def test_an_item_of_a_list_by_index_shows_the_recipes_entry(capsys, tiny_recipe_path):
    code, out, _ = _explain(capsys, "data.sources.0", "--recipe", str(tiny_recipe_path))
    assert code == 0
    assert "keys of data.sources[]:" in out and "data.sources.0:" in out


def test_brackets_on_a_section_that_is_no_list_are_one_error(capsys):
    code, _, err = _explain(capsys, "train[]")
    assert code == 1 and "train is not a list of sections" in err
