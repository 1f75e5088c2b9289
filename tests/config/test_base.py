"""The recipe YAML reader and the strict base section: a key given twice, nesting no recipe has, and numbers no
run can use (inf, NaN, seeds beyond 32 bits) are each one `file: ...` error instead of a silent choice or a
traceback."""

from __future__ import annotations

import pytest

from pretrain.config import load_recipe
from pretrain.config.base import SEED_LIMIT, load_yaml, parse_override_value
from pretrain.core.errors import RecipeError


def _problems(path, *overrides) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        load_recipe(path, overrides=list(overrides))
    return caught.value.problems


def test_a_duplicate_key_is_an_error_naming_both_lines(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: t\ntrain:\n  seq_len: 256\n  seq_len: 128\n")
    with pytest.raises(RecipeError) as caught:
        load_yaml(path)
    (line,) = caught.value.problems
    assert line.startswith(
        f"{path}: line 4, column 3: invalid YAML: duplicate key 'seq_len' (first on line 3)"
    )


def test_a_duplicate_section_is_an_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("tokenizer: {vocab_size: 512}\nname: t\ntokenizer:\n  vocab_size: 1024\n")
    with pytest.raises(
        RecipeError, match="line 3, column 1: invalid YAML: duplicate key 'tokenizer' .first on line 1"
    ):
        load_yaml(path)


def test_the_same_key_in_two_sections_is_fine(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("a: {lr: 1}\nb: {lr: 2}\n")
    assert load_yaml(path) == {"a": {"lr": 1}, "b": {"lr": 2}}


def test_nesting_no_recipe_has_is_one_error(tmp_path):
    """A 10,000-level flow sequence (600 here, already past the limit) was a RecursionError traceback."""
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nseed: " + "[" * 600 + "]" * 600 + "\n")
    with pytest.raises(RecipeError, match="invalid YAML: nested too deeply to read"):
        load_yaml(path)
    assert (
        parse_override_value("[" * 600 + "]" * 600) == "[" * 600 + "]" * 600
    )  # --set keeps it as text: a type error follows


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e999"])
def test_a_float_that_is_no_number_is_refused(tiny_recipe_path, value):
    """`lr: .inf` passed validate and trained."""
    (line,) = _problems(tiny_recipe_path, f"train.optimizer.lr={value}")
    assert line.startswith(f"{tiny_recipe_path}: train.optimizer.lr: Input should be a finite number"), line


@pytest.mark.parametrize("key", ["seed", "train.seed", "data.dedup.seed"])
def test_a_seed_beyond_32_bits_is_refused(tiny_recipe_path, key):
    """`seed: 2**70` passed validate."""
    (line,) = _problems(tiny_recipe_path, f"{key}={2**70}")
    assert line.startswith(f"{tiny_recipe_path}: {key}: Input should be less than {SEED_LIMIT}"), line
