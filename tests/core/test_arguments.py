"""Command-line values out of range are argparse errors (one line, exit 2) instead of a hang or a nonsense answer."""

from __future__ import annotations

import argparse

import pytest

from pretrain.core.arguments import fraction, positive_float, positive_int


@pytest.mark.parametrize("text", ["-3", "0", "two", "1.5"])
def test_a_count_must_be_a_whole_number_of_at_least_one(text):
    """`--num-processes -3` hung."""
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int(text)
    assert positive_int("2") == 2


@pytest.mark.parametrize("text", ["0", "-1", "inf", "nan", "x", "1.01"])
def test_a_fraction_is_in_zero_one(text):
    """`plan --mfu 0` printed infinite GPU-hours."""
    with pytest.raises(argparse.ArgumentTypeError):
        fraction(text)
    assert fraction("0.4") == 0.4 and fraction("1") == 1.0


@pytest.mark.parametrize("text", ["0", "-2", "inf", "nan", "lots"])
def test_a_budget_is_a_finite_number_above_zero(text):
    with pytest.raises(argparse.ArgumentTypeError):
        positive_float(text)
    assert positive_float("1e21") == 1e21


def test_the_cli_refuses_them_in_one_line(capsys):
    from pretrain.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["train", "recipe.yaml", "--num-processes", "-3"])
    assert caught.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == ["pretrain train: error: argument --num-processes: -3 is not >= 1"]
