"""`pretrain explain KEY [--recipe R]`: prints config/explain.py's text for the key and exits 0."""

from __future__ import annotations

import pytest

from pretrain.commands.explain import explain
from pretrain.config import load_recipe
from pretrain.config.explain import explain as explain_text
from pretrain.core.errors import PretrainError


def test_a_key_is_printed_as_config_explain_writes_it(capsys):
    assert explain("train.seq_len") == 0
    out = capsys.readouterr().out
    assert out == explain_text("train.seq_len", None) + "\n"
    assert out.startswith("train.seq_len\n  type:     integer\n")


def test_a_section_lists_its_keys(capsys):
    assert explain("train.schedule") == 0
    out = capsys.readouterr().out
    assert "keys of train.schedule:" in out and "warmup_fraction" in out


def test_with_a_recipe_its_value_of_the_key_is_shown(capsys, tiny_recipe_path):
    recipe = load_recipe(tiny_recipe_path)
    assert explain("train.seq_len", recipe) == 0
    out = capsys.readouterr().out
    assert out == explain_text("train.seq_len", recipe) + "\n"
    assert out.rstrip().endswith("train.seq_len = 256")


def test_an_unknown_key_is_an_error_and_prints_nothing(capsys):
    with pytest.raises(PretrainError, match="unknown recipe key 'train.optimizer.lrr'"):
        explain("train.optimizer.lrr")
    assert capsys.readouterr().out == ""
