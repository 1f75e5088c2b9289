"""Naming a step's documents and drawing any step's batch again: documents found from the shards' index and ids,
and `batch_at_step` equal to what the loader gave training, for one packed stream and for a staged mix with a
longer stage."""

from __future__ import annotations

import numpy as np
import pytest

from pretrain.tokens.forensics import DocumentIndex, batch_at_step, step_documents
from pretrain.tokens.loader import TokenLoader
from pretrain.tokens.manifest import SourceTokens, TokenManifest, TokenShard, TokenSplit
from pretrain.tokens.shards import ShardWriter
from pretrain.tokens.stages import LoaderStage, StagedTokenLoader

SEQ = 16


class _Tokenizer:
    def decode(self, ids, skip_special_tokens=True):
        return " ".join(f"t{i}" for i in ids if i)


def test_documents_of_a_span_come_from_the_index_and_the_ids(tmp_path):
    writer = ShardWriter(tmp_path, "web/train-00000", np.dtype(np.uint16))
    for n, doc_id in ((5, "a"), (3, "b"), (7, "c")):
        writer.add(list(range(1, n)) + [0], doc_id)  # documents of 5, 3 and 7 tokens: starts 0, 5, 8
    (shard,) = writer.close().shards
    assert shard.ids == "web/train-00000-00000.ids.txt"
    index = DocumentIndex(tmp_path, [TokenShard("empty.bin", "empty.idx.npy"), shard], "uint16")
    assert index.spans(0, 5) == [(0, 0)]
    assert index.spans(4, 2) == [(0, 0), (0, 1)]  # token 4 ends "a", token 5 starts "b"
    assert index.spans(6, 10) == [(0, 1), (0, 2)]
    assert [index.doc_id(0, k) for k in range(3)] == ["a", "b", "c"]
    assert index.document_tokens(0, 2, 3).tolist() == [1, 2, 3]
    unnamed = DocumentIndex(tmp_path, [TokenShard(shard.file, shard.index, shard.tokens, 3)], "uint16")
    assert unnamed.doc_id(0, 1) == "web/train-00000-00000.bin#1"  # packed before ids were recorded


def _staged_sources(tmp_path):
    """Two sources packed per source, with document ids `<source>-<n>`."""
    rng = np.random.default_rng(0)
    sources, splits = {}, {"train": [], "val": []}
    for s, (name, docs) in enumerate((("web", 300), ("code", 200))):
        shards = {}
        for split, n in (("train", docs), ("val", 3)):
            writer = ShardWriter(tmp_path, f"{name}/{split}", np.dtype(np.uint16))
            for d in range(n):
                writer.add(
                    list(rng.integers(100 * s + 1, 100 * s + 99, rng.integers(10, 60))) + [0], f"{name}-{d}"
                )
            shards[split] = writer.close().shards
            splits[split] += shards[split]
        sources[name] = SourceTokens(train_tokens=sum(x.tokens for x in shards["train"]), shards=shards)
    TokenManifest(
        dtype="uint16",
        vocab_size=1000,
        eos_id=0,
        bos_id=None,
        splits={
            k: TokenSplit(v, sum(x.tokens for x in v), sum(x.docs for x in v)) for k, v in splits.items()
        },
        sources=sources,
    ).write(tmp_path)


def _trained_steps(loader, n):
    """The rows each of `n` optimizer steps reads on this (single) rank, in read order."""
    steps = []
    for _ in range(n):
        rows = []
        for _ in range(loader.accum_steps):
            batch = next(loader)
            pairs = zip(batch["input_ids"].numpy(), batch["labels"].numpy())
            rows += [np.concatenate([inputs, labels[-1:]]) for inputs, labels in pairs]
        steps.append(np.stack(rows))
    return steps


@pytest.mark.parametrize("kind", ["packed", "staged"])
def test_batch_at_step_is_the_batch_training_read(tmp_path, kind):
    _staged_sources(tmp_path)
    stages = [
        LoaderStage("short", 6, {"web": 0.5, "code": 0.5}),
        LoaderStage("long", 12, {"code": 1.0}, 2 * SEQ),
    ]

    def make():
        if kind == "packed":
            return TokenLoader(tmp_path, "train", SEQ, 2, seed=3, windows_per_step=8)
        return StagedTokenLoader(tmp_path, stages, SEQ, 2, seed=3, windows_per_step=8)

    trained = _trained_steps(make(), 10)
    for step in (0, 5, 6, 9):  # the first, the last short one, the first long one, one inside
        batch = batch_at_step(make(), step)
        assert np.array_equal(batch.rows, trained[step]), step
        assert batch.seq_len == (2 * SEQ if kind == "staged" and step >= 6 else SEQ)
    # a staged loader moved forward to the batch gives it too
    loader = make()
    _trained_steps(loader, 3)
    assert np.array_equal(batch_at_step(loader, 7).rows, trained[7])


def test_step_documents_name_every_document_of_the_windows_once(tmp_path):
    _staged_sources(tmp_path)
    loader = StagedTokenLoader(
        tmp_path, [LoaderStage("all", 10, {"web": 0.5, "code": 0.5})], SEQ, 8, seed=3, windows_per_step=8
    )
    next(loader)
    seq_len, windows = loader.last_step_windows()
    docs = step_documents(loader, seq_len, windows, _Tokenizer())
    assert len({(d.source, d.id) for d in docs}) == len(docs) and {d.source for d in docs} == {"web", "code"}
    for d in docs:
        assert d.id.startswith(f"{d.source}-") and d.text.startswith("t")
    # brute force: the documents whose token range meets a window, from each source's index and ids files
    expected = []
    for window in windows:
        source, index = loader.windows[seq_len].source_of(int(window))
        name = loader.source_names[source]
        (shard,) = loader.manifest.sources[name].shards["train"]
        starts = list(np.load(tmp_path / shard.index)) + [shard.tokens]
        ids = (tmp_path / shard.ids).read_text().split()
        lo, hi = index * seq_len, index * seq_len + seq_len + 1
        for k in range(len(ids)):
            if starts[k] < hi and starts[k + 1] > lo and (name, ids[k]) not in expected:
                expected.append((name, ids[k]))
    assert [(d.source, d.id) for d in docs] == expected
