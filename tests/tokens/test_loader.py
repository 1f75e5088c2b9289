"""The loader: exact O(1) resume across 2 ranks, disjoint rank shards, epochs reshuffle, document positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pretrain.tokens.loader import TokenLoader
from pretrain.tokens.shards import write_packed
from pretrain.tokens.windows import document_position_ids


@pytest.fixture()
def tokens(tmp_path):
    rng = np.random.default_rng(0)
    docs = [list(rng.integers(1, 1000, rng.integers(20, 200))) + [0] for _ in range(300)]
    write_packed(tmp_path, docs, docs[:20], vocab_size=1000, eos_id=0)
    return tmp_path


def _take(loader, n):
    return [next(loader)["input_ids"].clone() for _ in range(n)]


@pytest.mark.parametrize("world", [1, 2])
def test_resume_mid_epoch_is_exact(tokens, world):
    for rank in range(world):
        ref = TokenLoader(tokens, "train", 32, 4, rank, world, seed=3)
        first = _take(ref, 7)
        state = ref.state_dict()
        expected = _take(ref, 200)  # crosses an epoch boundary
        resumed = TokenLoader(tokens, "train", 32, 4, rank, world, seed=3)
        resumed.load_state_dict(state)
        got = _take(resumed, 200)
        assert all(torch.equal(a, b) for a, b in zip(expected, got))
        assert first


def test_ranks_are_disjoint_and_cover_the_global_batch(tokens):
    single = TokenLoader(tokens, "train", 32, 8, 0, 1, seed=5)
    r0 = TokenLoader(tokens, "train", 32, 4, 0, 2, seed=5)
    r1 = TokenLoader(tokens, "train", 32, 4, 1, 2, seed=5)
    for _ in range(5):
        both = torch.cat([next(r0)["input_ids"], next(r1)["input_ids"]])
        assert torch.equal(both, next(single)["input_ids"])


def test_labels_are_next_tokens_and_epochs_reshuffle(tokens):
    loader = TokenLoader(tokens, "train", 32, 4, seed=1)
    batch = next(loader)
    assert torch.equal(batch["input_ids"][:, 1:], batch["labels"][:, :-1])
    epoch0 = [next(loader)["input_ids"] for _ in range(loader.batches_per_epoch - 1)]
    epoch1 = [next(loader)["input_ids"] for _ in range(loader.batches_per_epoch)]
    assert loader.epoch == 1
    assert not torch.equal(torch.cat(epoch0[:3]), torch.cat(epoch1[:3]))


def test_skip_is_position_arithmetic(tokens):
    a = TokenLoader(tokens, "train", 32, 4, seed=2)
    b = TokenLoader(tokens, "train", 32, 4, seed=2)
    _take(a, 9)
    b.skip(9)
    assert a.state_dict() == b.state_dict()
    assert torch.equal(next(a)["input_ids"], next(b)["input_ids"])


def test_val_is_finite_and_ordered(tokens):
    val = list(TokenLoader(tokens, "val", 32, 2))
    assert val and torch.equal(val[0]["input_ids"], next(TokenLoader(tokens, "val", 32, 2))["input_ids"])


def test_document_positions_restart_after_eos():
    rows = np.array([[5, 6, 0, 7, 8, 9, 0, 1]])
    assert document_position_ids(rows, 0).tolist() == [[0, 1, 2, 0, 1, 2, 3, 0]]


def test_loader_is_fast(tokens):
    import time

    loader = TokenLoader(tokens, "train", 32, 4, seed=0)
    start = time.perf_counter()
    for _ in range(200):
        next(loader)
    assert time.perf_counter() - start < 5  # sanity bound only; real figures are in bench/data_pipeline.py


def test_an_id_outside_the_vocabulary_is_one_error_naming_the_window(tokens):
    """#33 case 7: a shard damaged in place (same size) with ids past the vocabulary ended training with an
    IndexError traceback in the embedding; the loader now refuses the batch with one line."""
    from pretrain.core.errors import DataError

    shard = next(tokens.glob("*train*.bin"))
    ids = np.memmap(shard, dtype=np.uint16, mode="r+")
    ids[::50] = 60000  # vocabulary of 1000
    ids.flush()
    del ids
    loader = TokenLoader(tokens, "train", 32, 4, seed=3)
    with pytest.raises(DataError, match=r"window \d+ holds token id 60000, outside the tokenizer's 1000 ids"):
        _take(loader, 3)
