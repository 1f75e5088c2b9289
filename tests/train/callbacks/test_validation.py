"""Validation per source: each source's own val windows, the same number on every rank, its own bits/byte."""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import numpy as np
import torch

from pretrain.tokens.manifest import SourceTokens, TokenManifest, TokenSplit
from pretrain.tokens.shards import ShardWriter, dtype_for
from pretrain.train.callbacks import validation
from pretrain.train.metrics import source_val_bpb

SEQ, MICRO, VOCAB = 8, 2, 300


def _write_tokens(out, val_docs: dict[str, int]) -> TokenManifest:
    """Per-source shards; source s's ids are in [100 s + 1, 100 s + 99], so a window names its source."""
    dtype = dtype_for(VOCAB)
    rng = np.random.default_rng(0)
    sources, splits = {}, {"train": [], "val": []}
    for s, (name, n_val) in enumerate(val_docs.items()):
        shards = {}
        for split, docs in (("train", 20), ("val", n_val)):
            writer = ShardWriter(out, f"{name}/{split}", dtype)
            for _ in range(docs):
                writer.add(list(rng.integers(100 * s + 1, 100 * s + 99, 12)) + [0])
            shards[split] = writer.close().shards
            splits[split] += shards[split]
        val_tokens = sum(x.tokens for x in shards["val"])
        sources[name] = SourceTokens(
            train_tokens=sum(x.tokens for x in shards["train"]),
            val_tokens=val_tokens,
            val_bytes=val_tokens * (s + 2),  # bytes per token 2, 3, ...: each source converts with its own
            shards=shards,
        )
    manifest = TokenManifest(
        dtype=dtype.name,
        vocab_size=VOCAB,
        eos_id=0,
        bos_id=None,
        splits={k: TokenSplit(shards=v, tokens=sum(x.tokens for x in v), docs=0) for k, v in splits.items()},
        sources=sources,
    )
    manifest.write(out)
    return manifest


def _setup(tokens, rank=0, world=1, per_source=2, model=None):
    train = SimpleNamespace(
        seq_len=SEQ,
        micro_batch_size=MICRO,
        document_masking=False,
        validation=SimpleNamespace(per_source_batches=per_source, batches=3),
    )
    accelerator = SimpleNamespace(autocast=contextlib.nullcontext, reduce=lambda t, reduction: t)
    return SimpleNamespace(
        recipe=SimpleNamespace(train=train, layout=SimpleNamespace(tokens=tokens)),
        parallelism=SimpleNamespace(
            data_rank=rank, data_world=world, loss_parallel=False, tensor_parallel=False
        ),
        device=torch.device("cpu"),
        accelerator=accelerator,
        model=model,
        fused_head=None,
    )


def test_each_source_reads_only_its_own_windows_and_every_rank_the_same_number(tmp_path):
    manifest = _write_tokens(tmp_path, {"web": 30, "code": 20, "tiny": 1, "none": 0})
    one = validation.source_val_batches(_setup(tmp_path), manifest)
    assert sorted(one) == ["code", "tiny", "web"]  # a source without val tokens is left out
    for s, name in enumerate(["web", "code", "tiny"]):
        batches, bytes_per_token = one[name]
        assert len(batches) == 2 and bytes_per_token == s + 2
        ids = torch.cat([b["input_ids"] for b in batches]).flatten()
        assert ((ids == 0) | ((ids > 100 * s) & (ids < 100 * s + 100))).all(), name
    # two ranks: the same batch count each (a sharded forward is a collective), together one rank's windows
    # of twice the count; the 1-window source repeats its window
    ranks = [validation.source_val_batches(_setup(tmp_path, r, 2), manifest) for r in (0, 1)]
    for name in one:
        assert len(ranks[0][name][0]) == len(ranks[1][name][0]) == 2
    assert validation.source_window_ids(40, 8).tolist() == [
        0,
        5,
        10,
        15,
        20,
        25,
        30,
        35,
    ]  # spread over the stream
    assert validation.source_window_ids(3, 8).tolist() == [0, 1, 2, 0, 1, 2, 0, 1]


class _UniformModel(torch.nn.Module):
    """Uniform logits over the vocabulary: loss ln(V) on any window."""

    def forward(self, input_ids, use_cache=False, position_ids=None):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, VOCAB))


def test_validate_logs_each_sources_bits_per_byte_beside_the_mixed_one(tmp_path):
    manifest = _write_tokens(tmp_path, {"web": 30, "code": 20})
    setup = _setup(tmp_path, model=_UniformModel())
    values = validation.validate(setup, ([], 2.5, validation.source_val_batches(setup, manifest)))
    expected_loss = math.log(VOCAB)  # uniform logits
    for s, name in enumerate(["web", "code"]):
        assert math.isclose(values[f"val/{name}/loss"], expected_loss, rel_tol=1e-4)
        # bits per byte with the source's own bytes per token (2 for web, 3 for code)
        assert math.isclose(values[f"val/{name}/bpb"], expected_loss / math.log(2) / (s + 2), rel_tol=1e-4)
    assert set(source_val_bpb(values)) == {"web", "code"}
