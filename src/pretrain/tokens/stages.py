"""Staged data mixes drawn at load time from the per-source token shards (`train.data_stages`).

    loader = StagedTokenLoader(tokens_dir, stages, seq_len=256, batch_size=16, rank=r, world_size=w,
                               seed=s, windows_per_step=32)
    batch = next(loader)                       # same batches as TokenLoader: input_ids, labels (+ position_ids)
    loader.state_dict()                        # stage, global step, per-source epoch / position / draws

Each source's train shards (`sources.<name>.shards.train` in the manifest) form that source's own token
stream, cut into windows of T+1 tokens like `TokenLoader`'s. Optimizer step g draws one global batch of
`windows_per_step` windows: the stage that step g falls in (by `LoaderStage.end_step`) gives each source
its quota with a cumulative largest-remainder rule — the source furthest below its target share of the
stage so far gets the next window — so each source's drawn windows stay within one window of
`weight x windows drawn in the stage`. A source's windows come in a permutation drawn from (seed,
source, epoch); a source that runs out starts its next epoch with a new permutation. The global batch
is then shuffled (seed, step) so every rank and micro step sees the mix, and rank r of micro step m takes
the same slice of it as in `TokenLoader`.

Elastic and exact resume: the global batch of step g depends only on the state between optimizer steps
(step, per-source positions and epochs, draws in the current stage), never on the world size or micro
batch, so a checkpoint resumes on any world size dividing the global batch with the windows not yet
consumed. Stages follow the loader's own count of global batches drawn; after a spike-guard rollback
(which does not rewind data) it runs ahead of the trainer's step by the rolled-back steps. Window ids
in `last_windows` are global: source offset (sources in manifest order) + the source's window index, in
the windows of `last_seq_len` tokens.

Context-extension stages (a longer `LoaderStage.seq_len`): the accounting rule. The global batch stays the
same number of TOKENS (`windows_per_step x seq_len` of the loader's base length), so a stage of length L
draws `windows_per_step x seq_len / L` windows per step, in micro batches of its own size (`batch_size`):
its micro steps per optimizer step (grad accumulation) may differ from the base stage's. Each source's
text is split between the lengths that read it, in blocks of the longest length dealt out in proportion to
the tokens each length reads from it (source_streams.split_text), so a long stage trains on text no short
stage showed. Each length cuts its own blocks into windows of L+1 tokens, with its own permutation per
epoch (seed, source, L, epoch) and its own (epoch, position) per source: the documents are re-windowed, not
the positions converted, so a stage of length L continues exactly where the last stage of length L stopped
(a second stage at the base length continues the base epochs, as before). `drawn` counts windows per stage,
so a stage's realised tokens are its windows x its L. All of it is state between optimizer steps, saved
per length (`sources` for the base length, `sources_by_seq_len` for the others), so a checkpoint inside or
at the start of a long stage resumes exactly, on any world size that divides the stage's global batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pretrain.core.errors import DataError
from pretrain.tokens.loader import WindowLoader
from pretrain.tokens.manifest import TokenShard
from pretrain.tokens.source_streams import SourceWindows, open_source_streams, quota_counts
from pretrain.tokens.stage_plan import LoaderStage, realised_shares
from pretrain.tokens.windows import check_ids, window_batch


class StagedTokenLoader(WindowLoader):
    """The train split as a staged mix of its sources (see the module docstring); a drop-in for `TokenLoader`."""

    def __init__(
        self,
        tokens_dir: Path,
        stages: list[LoaderStage],
        seq_len: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        document_positions: bool = False,
        expected_tokenizer_hash: str | None = None,
        windows_per_step: int | None = None,
    ):
        if not stages:
            raise ValueError("StagedTokenLoader needs at least one stage")
        super().__init__(
            tokens_dir,
            seq_len,
            batch_size,
            rank,
            world_size,
            seed,
            document_positions,
            expected_tokenizer_hash,
            windows_per_step,
        )
        tokens_per_step = self.windows_per_step * seq_len
        self.stages = [
            stage.resolved(seq_len, batch_size, document_positions, tokens_per_step, world_size, self.dir)
            for stage in stages
        ]
        self.seq_lens = sorted({seq_len} | {stage.seq_len for stage in self.stages})
        # per length: every source's windows of that length, and where each source stands in them
        reads = self._planned_reads(tokens_per_step) if len(self.seq_lens) > 1 else None
        streams = open_source_streams(
            self.dir, self.manifest, self.stages, self.seq_lens, seed, seq_len, reads
        )
        self.windows = {length: SourceWindows(by_length) for length, by_length in streams.items()}
        self.sources = self.windows[seq_len].streams
        self.source_names = [s.name for s in self.sources]
        self._weights = [
            np.array([stage.weights.get(name, 0.0) for name in self.source_names]) for stage in self.stages
        ]
        self.step, self.micro = 0, 0  # global batches started; micro step within the current one
        # windows drawn per stage per source (the quota rule's memory, and the realised shares)
        self.drawn = np.zeros((len(self.stages), len(self.sources)), dtype=np.int64)
        self._batch: np.ndarray | None = None  # the current global batch's global window ids
        self._batch_stage = 0
        self.last_seq_len = seq_len  # the length of the windows in `last_windows`

    def _planned_reads(self, tokens_per_step: int) -> dict[str, dict[int, float]]:
        """Tokens the stages will read from each source at each length (steps x tokens per step x weight): how
        each source's text is split between the lengths (source_streams.split_text)."""
        reads: dict[str, dict[int, float]] = {}
        start = 0
        for stage in self.stages:
            tokens = max(0, stage.end_step - start) * tokens_per_step
            start = max(start, stage.end_step)
            for name, weight in stage.weights.items():
                by_length = reads.setdefault(name, {})
                by_length[stage.seq_len] = by_length.get(stage.seq_len, 0.0) + tokens * weight
        return reads

    # ------------------------------------------------------------------ stages
    def stage_at(self, step: int) -> int:
        """Index of the stage optimizer step `step` (0-based) draws from; steps past the end stay in the last."""
        for i, stage in enumerate(self.stages):
            if step < stage.end_step:
                return i
        return len(self.stages) - 1

    @property
    def stage(self) -> int:
        """The stage of the next global batch."""
        return self.stage_at(self.step)

    def _stage_windows(self, stage: int) -> int:
        """Windows in one global batch of `stage` (the same tokens as the base stage's)."""
        return self.windows_per_step * self.seq_len // self.stages[stage].seq_len

    def _micro_steps(self, stage: int) -> int:
        return self._stage_windows(stage) // (self.stages[stage].batch_size * self.world_size)

    @property
    def accum_steps(self) -> int:
        """Micro batches per optimizer step on each rank in the stage of the next global batch."""
        return self._micro_steps(self._batch_stage if self.micro else self.stage)

    def realised_shares(self) -> list[dict]:
        """Per stage: requested weights, windows and tokens drawn, and each source's realised token share."""
        return realised_shares(self.stages, self.drawn, self.source_names, self.seq_len)

    # ------------------------------------------------------------------ drawing
    def _draw_global_batch(self, stage: int) -> np.ndarray:
        """The next optimizer step's global window ids; advances the per-source positions of its length."""
        counts = quota_counts(self._weights[stage], self.drawn[stage], self._stage_windows(stage))
        batch = self.windows[self.stages[stage].seq_len].take(counts)
        self.drawn[stage] += counts
        return np.random.default_rng([self.seed, self.step]).permutation(batch)

    def _advance(self) -> np.ndarray:
        """This micro step's slice of the global batch (all ranks), drawing a new global batch when due."""
        if self.micro == 0:
            self._batch_stage = self.stage
            self._batch = self._draw_global_batch(self._batch_stage)
        step_windows = self.stages[self._batch_stage].batch_size * self.world_size
        first = self.micro * step_windows
        self.micro += 1
        if self.micro == self._micro_steps(self._batch_stage):
            self.micro, self.step = 0, self.step + 1
        return self._batch[first : first + step_windows]

    def __next__(self) -> dict[str, torch.Tensor]:
        step_slice = self._advance()
        stage = self.stages[self._batch_stage]
        windows = step_slice[self.rank * stage.batch_size : (self.rank + 1) * stage.batch_size]
        self.last_windows, self.last_seq_len = windows, stage.seq_len
        rows = np.stack([self.window_tokens(w, stage.seq_len) for w in windows])
        rows = check_ids(rows, windows, self.manifest.vocab_size, self.dir)
        return window_batch(rows, self.eos_id if stage.document_positions else None)

    def skip(self, n_batches: int) -> None:
        """Advance by `n_batches` micro steps without reading (used to skip a bad data window)."""
        for _ in range(n_batches):
            self._advance()

    def skip_steps(self, n_steps: int) -> None:
        """Advance by `n_steps` whole optimizer steps without reading, whatever each step's stage."""
        for _ in range(n_steps):
            self.skip(self.accum_steps - self.micro)

    # ------------------------------------------------------------------ forensics (tokens/forensics.py)
    @property
    def data_step(self) -> int:
        return self.step

    def last_step_windows(self) -> tuple[int, np.ndarray]:
        return self.stages[self._batch_stage].seq_len, self._batch

    def next_global_batch(self) -> tuple[int, np.ndarray]:
        self.skip_steps(1)
        return self.last_step_windows()

    def window_tokens(self, window: int, seq_len: int) -> np.ndarray:
        return self.windows[seq_len].tokens(int(window))

    def window_source(self, window: int, seq_len: int) -> tuple[list[TokenShard], int]:
        windows = self.windows[seq_len]
        source, index = windows.source_of(int(window))
        offset = windows.streams[source].token_offset(index)
        return self.manifest.sources[self.source_names[source]].shards["train"], offset

    def start_at_step(self, step: int) -> None:
        """Start drawing at optimizer step `step` with every source at its first window (a branch of another
        run: `pretrain anneal`); stages before it stay undrawn."""
        self.step, self.micro, self._batch = step, 0, None
        for windows in self.windows.values():
            windows.reset()
        self.drawn[:] = 0

    # ------------------------------------------------------------------ state
    def _plan(self) -> list[dict]:
        plan = []
        for s in self.stages:  # a stage at the base length is written as before context stages existed
            entry = {"name": s.name, "end_step": s.end_step, "weights": s.weights}
            plan.append(entry if s.seq_len == self.seq_len else {**entry, "seq_len": s.seq_len})
        return plan

    def state_dict(self) -> dict:
        """The global position between optimizer steps (the same on every rank)."""
        state = {
            "kind": "staged",
            "step": self.step,
            "micro": self.micro,
            "stage": self.stage,
            "sources": self.windows[self.seq_len].state_dict(),
            "drawn": self.drawn.tolist(),
            "stages": self._plan(),
            "seed": self.seed,
            "seq_len": self.seq_len,
            "windows_per_step": self.windows_per_step,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
        }
        longer = [length for length in self.seq_lens if length != self.seq_len]
        if longer:
            state["sources_by_seq_len"] = {
                str(length): self.windows[length].state_dict() for length in longer
            }
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue where `state` stopped, on this loader's world size and micro batch (see the module docstring)."""
        if state.get("kind") != "staged":
            raise DataError(
                f"{self.dir}: the checkpoint's loader state is of a run without train.data_stages; resume it "
                "without data stages, or branch a new mix from it with `pretrain anneal CKPT`"
            )
        saved_by_length = {self.seq_len: state["sources"], **state.get("sources_by_seq_len", {})}
        saved_by_length = {int(length): sources for length, sources in saved_by_length.items()}
        saved_windows = {
            length: {n: s.get("n_windows") for n, s in sources.items()}
            for length, sources in saved_by_length.items()
        }
        mine = {length: windows.n_windows() for length, windows in self.windows.items()}
        for key, saved, now in (
            ("seq_len", state.get("seq_len"), self.seq_len),
            ("seed", state.get("seed"), self.seed),
            ("windows_per_step", state.get("windows_per_step"), self.windows_per_step),
            ("per-source windows", saved_windows, mine),
            ("data stages", state.get("stages"), self._plan()),
        ):
            if saved != now:
                raise DataError(
                    f"{self.dir}: loader state was saved with {key}={saved}, now {now}; resume with the same "
                    "data, seq_len, seed, global batch and train.data_stages"
                )
        if int(state["micro"]):
            raise DataError(
                f"{self.dir}: loader state stopped inside optimizer step {state['step']}; resume from a "
                "checkpoint (taken between optimizer steps)"
            )
        self.step, self.micro = int(state["step"]), 0
        for length, sources in saved_by_length.items():
            self.windows[length].load_state_dict(sources)
        self.drawn = np.array(state["drawn"], dtype=np.int64).reshape(len(self.stages), len(self.sources))
        self._batch = None
