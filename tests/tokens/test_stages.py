"""The staged loader: exact and elastic resume across stage boundaries, realised shares, per-source epochs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pretrain.core.errors import DataError
from pretrain.tokens.loader import TokenLoader
from pretrain.tokens.manifest import SourceTokens, TokenManifest
from pretrain.tokens.shards import ShardWriter, dtype_for, write_packed
from pretrain.tokens.source_streams import quota_counts
from pretrain.tokens.stages import LoaderStage, StagedTokenLoader

SEQ, GLOBAL = 16, 8  # a global batch of 8 windows: micro 4 x 2 ranks x accum 1, or micro 2 x 1 rank x accum 4
# sources of different sizes: `small` runs out (and starts a new epoch) within the test runs
SIZES = {"web": 400, "code": 250, "small": 30}  # documents per source
STAGES = [
    LoaderStage("main", 12, {"web": 0.6, "code": 0.3, "small": 0.1}),
    LoaderStage("anneal", 20, {"code": 0.7, "small": 0.3}),
]


def write_sources(out, sizes: dict[str, int], vocab_size: int = 1000) -> TokenManifest:
    """A tokens folder packed per source, as `pretrain pack` lays it out: `<source>/{train,val}-NNNNN.bin`."""
    dtype = dtype_for(vocab_size)
    rng = np.random.default_rng(0)
    sources, splits = {}, {"train": [], "val": []}
    for s, (name, n_docs) in enumerate(sizes.items()):
        shards = {}
        for split, docs in (("train", n_docs), ("val", 3)):
            writer = ShardWriter(out, f"{name}/{split}", dtype)
            for _ in range(docs):  # each source's ids live in its own range, so a window names its source
                writer.add(list(rng.integers(100 * s + 1, 100 * s + 99, rng.integers(10, 40))) + [0])
            shards[split] = writer.close().shards
            splits[split] += shards[split]
        sources[name] = SourceTokens(train_tokens=sum(x.tokens for x in shards["train"]), shards=shards)
    from pretrain.tokens.manifest import TokenSplit

    manifest = TokenManifest(
        dtype=dtype.name,
        vocab_size=vocab_size,
        eos_id=0,
        bos_id=None,
        splits={
            k: TokenSplit(shards=v, tokens=sum(x.tokens for x in v), docs=sum(x.docs for x in v))
            for k, v in splits.items()
        },
        sources=sources,
    )
    manifest.write(out)
    return manifest


@pytest.fixture()
def tokens(tmp_path):
    write_sources(tmp_path, SIZES)
    return tmp_path


def _loaders(tokens, world: int, micro: int, stages=STAGES) -> list[StagedTokenLoader]:
    return [
        StagedTokenLoader(tokens, stages, SEQ, micro, rank, world, seed=7, windows_per_step=GLOBAL)
        for rank in range(world)
    ]


def _steps(loaders: list[StagedTokenLoader], n: int) -> list[list[int]]:
    """Global window ids each of `n` optimizer steps reads, over all ranks and micro steps, in read order."""
    accum = GLOBAL // (loaders[0].batch_size * len(loaders))
    steps = []
    for _ in range(n):
        ids = []
        for _ in range(accum):
            for loader in loaders:
                next(loader)
                ids += [int(w) for w in loader.last_windows]
        steps.append(ids)
    return steps


def _resume(tokens, saved: dict, world: int, micro: int) -> list[StagedTokenLoader]:
    loaders = _loaders(tokens, world, micro)
    for loader in loaders:
        loader.load_state_dict(saved)
    return loaders


def test_resume_mid_stage_and_across_the_boundary_equals_an_uninterrupted_run(tokens):
    expected = _steps(_loaders(tokens, 2, 4), 24)  # 12 + 8 steps of stages, then 4 past the end (last stage)
    # 2 ranks -> stop mid-stage 0 (step 3) -> 1 rank, micro 2, accum 4 -> stop mid-stage 1 (step 13) -> 2 ranks;
    # neither stop falls where the weights divide the windows drawn, so the quota rule's memory matters
    first = _loaders(tokens, 2, 4)
    got = _steps(first, 3)
    second = _resume(tokens, first[0].state_dict(), 1, 2)
    got += _steps(second, 10)
    assert second[0].stage == 1  # the boundary (step 12) was crossed after a resume
    third = _resume(tokens, second[0].state_dict(), 2, 4)
    got += _steps(third, 11)
    assert got == expected
    # none twice within a source epoch, none skipped: the big source's first-epoch windows are all distinct
    web = [w for step in expected for w in step if w < third[0].windows[SEQ].offsets[1]]
    assert len(web) == len(set(web))


def test_two_ranks_cover_the_same_windows_as_one(tokens):
    one = _steps(_loaders(tokens, 1, 8), 16)
    two = _steps(_loaders(tokens, 2, 4), 16)
    assert one == two
    r0, r1 = _loaders(tokens, 2, 4)
    for _ in range(3):
        a, b = next(r0)["input_ids"], next(r1)["input_ids"]
        assert not set(r0.last_windows.tolist()) & set(r1.last_windows.tolist())
        assert a.shape == b.shape == (4, SEQ)


def test_realised_shares_stay_within_two_percent_of_the_weights(tokens):
    loader = _loaders(tokens, 1, 8)[0]
    _steps([loader], 20)
    for stage, report in zip(STAGES, loader.realised_shares()):
        assert report["tokens"] == (stage.end_step - (12 if stage.name == "anneal" else 0)) * GLOBAL * SEQ
        for name, weight in stage.weights.items():
            assert abs(report["realised"][name] - weight) <= 0.02, (stage.name, name, report)
        assert set(report["realised"]) == set(stage.weights)  # `web` is not read in the anneal stage


def test_windows_come_from_the_stage_sources_and_tokens_match_their_source(tokens):
    loader = _loaders(tokens, 1, 8)[0]
    for step in range(20):
        batch = next(loader)
        ids = batch["input_ids"]
        assert torch.equal(ids[:, 1:], batch["labels"][:, :-1])
        # every non-EOS id of a window falls in its source's id range (source index * 100 ...)
        for row, window in zip(ids, loader.last_windows):
            source, _ = loader.windows[SEQ].source_of(int(window))
            body = row[row != 0]
            assert ((body > 100 * source) & (body < 100 * source + 100)).all()
            if step >= 12:
                assert loader.source_names[source] != "web"


def test_a_source_that_runs_out_repeats_with_a_new_permutation(tokens):
    loader = _loaders(tokens, 1, 8)[0]
    small = loader.source_names.index("small")
    n = loader.sources[small].n_windows
    seen = []
    for _ in range(200):
        if len(seen) >= 2 * n:
            break
        next(loader)
        lo, hi = loader.windows[SEQ].offsets[small], loader.windows[SEQ].offsets[small + 1]
        seen += [int(w) for w in loader.last_windows if lo <= w < hi]
    assert loader.windows[SEQ].epochs[small] >= 2
    epoch0, epoch1 = seen[:n], seen[n : 2 * n]
    assert sorted(epoch0) == sorted(epoch1) == list(range(lo, hi))  # each epoch: every window once
    assert epoch0 != epoch1  # in a new order


def test_quota_counts_follow_the_weights_cumulatively():
    weights = np.array([0.7, 0.2, 0.1])
    drawn = np.zeros(3, dtype=np.int64)
    for _ in range(50):
        drawn += quota_counts(weights, drawn, 7)
        assert np.all(np.abs(drawn - weights * drawn.sum()) <= 1)
    assert quota_counts(np.array([0.5, 0.0, 0.5]), np.zeros(3, dtype=np.int64), 4).tolist() == [2, 0, 2]


def test_state_is_refused_when_the_stages_or_the_kind_changed(tokens, tmp_path):
    loader = _loaders(tokens, 1, 8)[0]
    next(loader)
    saved = loader.state_dict()
    other = [LoaderStage("main", 10, STAGES[0].weights), STAGES[1]]
    with pytest.raises(DataError, match="data stages"):
        _loaders(tokens, 1, 8, other)[0].load_state_dict(saved)
    plain = TokenLoader(tokens, "train", SEQ, 8, seed=7, windows_per_step=GLOBAL)
    with pytest.raises(DataError, match="with train.data_stages"):
        plain.load_state_dict(saved)
    with pytest.raises(DataError, match="without train.data_stages"):
        loader.load_state_dict(plain.state_dict())


def test_tokens_without_per_source_shards_are_refused(tmp_path):
    write_packed(tmp_path, [[1, 2, 3, 0]] * 200, [[1, 0]] * 5, vocab_size=1000, eos_id=0)
    with pytest.raises(DataError, match=r"needs per-source token shards .*re-run `pretrain pack"):
        StagedTokenLoader(tmp_path, STAGES, SEQ, 8, windows_per_step=GLOBAL)


def test_a_stage_source_missing_from_the_packed_tokens_is_refused(tokens):
    stages = [LoaderStage("main", 10, {"web": 0.5, "books": 0.5})]
    with pytest.raises(DataError, match="books"):
        StagedTokenLoader(tokens, stages, SEQ, 8, windows_per_step=GLOBAL)


# a context-extension stage: windows of 2 x SEQ from step 8 on, the global batch the same 128 tokens (4 windows)
LONG = 2 * SEQ
LONG_STAGES = [
    LoaderStage("short", 8, {"web": 0.6, "code": 0.4}),
    LoaderStage("long", 20, {"web": 0.5, "code": 0.5}, seq_len=LONG),
]


def _long_steps(loaders: list[StagedTokenLoader], n: int) -> list[list[tuple[int, int]]]:
    """(window length, global window id) each of `n` optimizer steps reads, over all ranks, in read order."""
    steps = []
    for _ in range(n):
        ids = []
        for _ in range(loaders[0].accum_steps):
            for loader in loaders:
                batch = next(loader)
                assert batch["input_ids"].shape[1] == loader.last_seq_len
                ids += [(loader.last_seq_len, int(w)) for w in loader.last_windows]
        steps.append(ids)
    return steps


def _long_loaders(tokens, world: int, micro: int, saved: dict | None = None) -> list[StagedTokenLoader]:
    loaders = _loaders(tokens, world, micro, LONG_STAGES)
    for loader in loaders:
        if saved is not None:
            loader.load_state_dict(saved)
    return loaders


def test_a_long_stage_reads_fewer_longer_windows_with_the_same_tokens_per_step(tokens):
    (loader,) = _long_loaders(tokens, 1, 8)
    steps = _long_steps([loader], 12)
    assert [len(s) for s in steps] == [GLOBAL] * 8 + [GLOBAL // 2] * 4
    assert {length for s in steps[8:] for length, _ in s} == {LONG}
    assert [len(s) * s[0][0] for s in steps] == [GLOBAL * SEQ] * 12  # tokens per step never change
    # the long stage's micro batch holds as many tokens as the base one: 8 x 16 -> 4 x 32, still 1 micro step
    assert loader.accum_steps == 1 and next(loader)["input_ids"].shape == (4, LONG)
    report = loader.realised_shares()
    assert report[1]["tokens"] == 5 * (GLOBAL // 2) * LONG  # windows x their length (4 steps + the one above)
    # long windows are the packed stream re-cut at 33 tokens, in their own permutation, from the blocks of text
    # held for the long stage: web's blocks are dealt out as the stages read it (8 steps x 0.6 short, 12 x 0.5 long)
    web = loader.windows[LONG].streams[0]
    n_blocks = (int(web._starts[-1]) - 1) // LONG
    assert web.n_windows == round(n_blocks * (12 * 0.5) / (12 * 0.5 + 8 * 0.6))
    for _, window in steps[9]:
        source, index = loader.windows[LONG].source_of(window)
        start = loader.windows[LONG].streams[source].token_offset(index)
        assert start % LONG == 0
        assert np.array_equal(
            loader.windows[LONG].tokens(window),
            np.concatenate([np.asarray(s) for s in loader.windows[LONG].streams[source]._shards])[
                start : start + LONG + 1
            ],
        )


def test_a_long_stage_reads_text_the_short_stage_never_showed(tokens):
    (loader,) = _long_loaders(tokens, 1, 8)
    for short, long in zip(loader.windows[SEQ].streams, loader.windows[LONG].streams):
        short_tokens = {short.token_offset(w) + t for w in range(short.n_windows) for t in range(SEQ)}
        long_tokens = {long.token_offset(w) + t for w in range(long.n_windows) for t in range(LONG)}
        assert short_tokens.isdisjoint(long_tokens)  # no token is an input of both a short and a long window
        if short.name == "small":  # read by no stage here: no windows at all
            assert long.n_windows == short.n_windows == 0
            continue
        total = int(short._starts[-1])
        assert total - 1 - LONG < len(short_tokens | long_tokens) <= total  # and all the text is read
    # the whole run: the long stage's windows never repeat a token the short stage read
    steps = _long_steps([loader], 20)
    read = {SEQ: set(), LONG: set()}
    for step in steps:
        for length, window in step:
            source, index = loader.windows[length].source_of(window)
            start = loader.windows[length].streams[source].token_offset(index)
            read[length] |= {(source, start + t) for t in range(length)}
    assert read[SEQ] and read[LONG] and read[SEQ].isdisjoint(read[LONG])


def test_resume_at_and_inside_the_long_stage_on_one_and_two_ranks_equals_an_uninterrupted_run(tokens):
    expected = _long_steps(_long_loaders(tokens, 2, 4), 20)
    # 2 ranks stop at the boundary (step 8, the long stage's first batch not drawn yet) -> 1 rank (micro 2,
    # accum 4 in the short stage, 4 in the long one) stops inside the long stage (step 13) -> 2 ranks
    first = _long_loaders(tokens, 2, 4)
    got = _long_steps(first, 8)
    assert first[0].stage == 1
    second = _long_loaders(tokens, 1, 2, first[0].state_dict())
    assert second[0].accum_steps == 4  # micro 1 x 32 tokens: 4 micro steps for the 4 windows
    got += _long_steps(second, 5)
    saved = second[0].state_dict()
    assert set(saved["sources_by_seq_len"]) == {str(LONG)}  # where each source stands in its long windows
    got += _long_steps(_long_loaders(tokens, 2, 4, saved), 7)
    assert got == expected


def test_a_long_stage_whose_batch_does_not_divide_is_refused(tokens):
    odd = [LONG_STAGES[0], LoaderStage("long", 20, {"web": 1.0}, seq_len=48)]
    with pytest.raises(DataError, match=r"stage 'long': a global batch of 128 tokens .* 48 tokens"):
        _loaders(tokens, 1, 8, odd)
