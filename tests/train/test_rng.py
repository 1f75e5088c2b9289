"""The process's random states (Python, NumPy, torch) as JSON data a checkpoint keeps, and `preserved_rng`,
under which evaluation runs without consuming them."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from pretrain.train.rng import preserved_rng, rng_state, set_rng_state


def draws() -> tuple:
    return (random.random(), random.getrandbits(64), float(np.random.rand()), torch.rand(3).tolist())


def test_the_state_names_every_generator_and_is_json():
    state = rng_state()
    assert {"python", "numpy", "torch"} <= set(state)
    assert json.loads(json.dumps(state)) == state


def test_restoring_a_state_replays_the_same_draws():
    state = rng_state()
    first = draws()
    set_rng_state(state)
    assert draws() == first


def test_a_state_read_back_from_json_replays_the_same_draws():
    saved = json.dumps(rng_state())
    first = draws()
    set_rng_state(json.loads(saved))
    assert draws() == first


def test_each_generator_is_restored_on_its_own():
    state = rng_state()
    python, numpy_, torch_ = random.random(), float(np.random.rand()), torch.rand(1).item()
    set_rng_state(state)
    assert torch.rand(1).item() == torch_ and float(np.random.rand()) == numpy_ and random.random() == python


def test_draws_inside_preserved_rng_do_not_move_the_streams():
    state = rng_state()
    expected = draws()
    set_rng_state(state)
    with preserved_rng():
        draws()
        torch.manual_seed(0)
        np.random.seed(0)
        random.seed(0)
    assert draws() == expected


def test_preserved_rng_restores_the_streams_after_an_error_and_lets_it_through():
    state = rng_state()
    expected = draws()
    set_rng_state(state)
    with pytest.raises(RuntimeError, match="evaluation failed"), preserved_rng():
        draws()
        raise RuntimeError("evaluation failed")
    assert draws() == expected
