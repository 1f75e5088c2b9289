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
in `last_windows` are global: source offset (sources in manifest order) + the source's window index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pretrain.core.errors import DataError
from pretrain.tokens.loader import WindowLoader
from pretrain.tokens.manifest import TokenManifest
from pretrain.tokens.source_streams import SourceStream, quota_counts
from pretrain.tokens.windows import open_shard_list, window_batch


@dataclass(frozen=True)
class LoaderStage:
    """A stage as the loader needs it: its label, the optimizer step it ends at (exclusive), source shares."""

    name: str
    end_step: int
    weights: dict[str, float]  # normalised: sums to 1


def loader_stages(train_cfg, total_steps: int) -> list[LoaderStage]:
    """`train.data_stages` of a recipe as loader stages over a run of `total_steps` optimizer steps."""
    ends = train_cfg.stage_end_steps(total_steps)
    return [
        LoaderStage(stage.name or f"stage-{i}", end, stage.weight_shares())
        for i, (stage, end) in enumerate(zip(train_cfg.data_stages, ends))
    ]


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
        self.stages = list(stages)
        self.sources = self._open_sources()
        self.source_names = [s.name for s in self.sources]
        self.offsets = np.concatenate([[0], np.cumsum([s.n_windows for s in self.sources])]).astype(np.int64)
        self.micro_steps = self.windows_per_step // self.step_windows
        self._weights = [
            np.array([stage.weights.get(name, 0.0) for name in self.source_names]) for stage in self.stages
        ]
        self.step, self.micro = 0, 0  # global batches started; micro step within the current one
        self.epochs = np.zeros(len(self.sources), dtype=np.int64)
        self.positions = np.zeros(len(self.sources), dtype=np.int64)
        # windows drawn per stage per source (the quota rule's memory, and the realised shares)
        self.drawn = np.zeros((len(self.stages), len(self.sources)), dtype=np.int64)
        self._batch: np.ndarray | None = None  # the current global batch's global window ids

    def _open_sources(self) -> list[SourceStream]:
        where = TokenManifest.path(self.dir)
        if not self.manifest.sources or any(s.shards is None for s in self.manifest.sources.values()):
            raise DataError(
                f"{where}: train.data_stages needs per-source token shards (`sources.<name>.shards`), and this "
                "tokens/ folder has none; re-run `pretrain pack RECIPE` to re-pack it, or remove train.data_stages"
            )
        wanted = {name for stage in self.stages for name in stage.weights}
        missing = sorted(wanted - set(self.manifest.sources))
        if missing:
            raise DataError(
                f"{where}: train.data_stages names source(s) {', '.join(missing)} that the packed tokens do not "
                f"have (packed: {', '.join(self.manifest.sources)}); re-run `pretrain pack RECIPE`"
            )
        streams = []
        for name, counts in self.manifest.sources.items():
            shards, starts = open_shard_list(self.dir, self.manifest, counts.shards.get("train", []))
            stream = SourceStream(name, shards, starts, self.seq_len, self.seed)
            if name in wanted and stream.n_windows == 0:
                raise DataError(
                    f"{where}: source {name!r} has fewer than {self.seq_len + 1} train tokens, too few for one "
                    "window; drop it from train.data_stages or lower train.seq_len"
                )
            streams.append(stream)
        return streams

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

    def realised_shares(self) -> list[dict]:
        """Per stage: requested weights, windows and tokens drawn, and each source's realised token share."""
        out = []
        for i, stage in enumerate(self.stages):
            drawn = self.drawn[i]
            total = int(drawn.sum())
            out.append(
                {
                    "stage": stage.name,
                    "index": i,
                    "end_step": stage.end_step,
                    "tokens": total * self.seq_len,
                    "requested": {
                        n: round(stage.weights[n], 6) for n in self.source_names if n in stage.weights
                    },
                    "realised": {
                        n: round(int(d) / total, 6) if total else 0.0
                        for n, d in zip(self.source_names, drawn)
                        if n in stage.weights or d
                    },
                }
            )
        return out

    # ------------------------------------------------------------------ drawing
    def _draw_global_batch(self) -> np.ndarray:
        """The next optimizer step's global window ids; advances the per-source positions."""
        stage = self.stage_at(self.step)
        counts = quota_counts(self._weights[stage], self.drawn[stage], self.windows_per_step)
        ids = []
        for i, count in enumerate(counts):
            if not count:
                continue
            windows, self.epochs[i], self.positions[i] = self.sources[i].take(
                int(self.epochs[i]), int(self.positions[i]), int(count)
            )
            ids.append(windows + self.offsets[i])
        self.drawn[stage] += counts
        batch = np.concatenate(ids)
        return np.random.default_rng([self.seed, self.step]).permutation(batch)

    def _advance(self) -> np.ndarray:
        """This micro step's slice of the global batch (all ranks), drawing a new global batch when due."""
        if self.micro == 0:
            self._batch = self._draw_global_batch()
        first = self.micro * self.step_windows
        self.micro += 1
        if self.micro == self.micro_steps:
            self.micro, self.step = 0, self.step + 1
        return self._batch[first : first + self.step_windows]

    def _window_tokens(self, global_id: int) -> np.ndarray:
        i = int(np.searchsorted(self.offsets, global_id, side="right") - 1)
        return self.sources[i].window_tokens(global_id - int(self.offsets[i]))

    def __next__(self) -> dict[str, torch.Tensor]:
        step_slice = self._advance()
        windows = step_slice[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        self.last_windows = windows
        rows = np.stack([self._window_tokens(int(w)) for w in windows])
        return window_batch(rows, self.eos_id if self.document_positions else None)

    def skip(self, n_batches: int) -> None:
        """Advance by `n_batches` micro steps without reading (used to skip a bad data window)."""
        for _ in range(n_batches):
            self._advance()

    def start_at_step(self, step: int) -> None:
        """Start drawing at optimizer step `step` with every source at its first window (a branch of another
        run: `pretrain anneal`); stages before it stay undrawn."""
        self.step, self.micro, self._batch = step, 0, None
        self.epochs[:], self.positions[:], self.drawn[:] = 0, 0, 0

    # ------------------------------------------------------------------ state
    def _plan(self) -> list[dict]:
        return [{"name": s.name, "end_step": s.end_step, "weights": s.weights} for s in self.stages]

    def state_dict(self) -> dict:
        """The global position between optimizer steps (the same on every rank)."""
        return {
            "kind": "staged",
            "step": self.step,
            "micro": self.micro,
            "stage": self.stage,
            "sources": {
                name: {"epoch": int(e), "position": int(p), "n_windows": s.n_windows}
                for name, e, p, s in zip(self.source_names, self.epochs, self.positions, self.sources)
            },
            "drawn": self.drawn.tolist(),
            "stages": self._plan(),
            "seed": self.seed,
            "seq_len": self.seq_len,
            "windows_per_step": self.windows_per_step,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue where `state` stopped, on this loader's world size and micro batch (see the module docstring)."""
        if state.get("kind") != "staged":
            raise DataError(
                f"{self.dir}: the checkpoint's loader state is of a run without train.data_stages; resume it "
                "without data stages, or branch a new mix from it with `pretrain anneal CKPT`"
            )
        saved_sources = {n: s.get("n_windows") for n, s in state["sources"].items()}
        mine = {n: s.n_windows for n, s in zip(self.source_names, self.sources)}
        for key, saved, now in (
            ("seq_len", state.get("seq_len"), self.seq_len),
            ("seed", state.get("seed"), self.seed),
            ("windows_per_step", state.get("windows_per_step"), self.windows_per_step),
            ("per-source windows", saved_sources, mine),
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
        for i, name in enumerate(self.source_names):
            self.epochs[i] = int(state["sources"][name]["epoch"])
            self.positions[i] = int(state["sources"][name]["position"])
        self.drawn = np.array(state["drawn"], dtype=np.int64).reshape(len(self.stages), len(self.sources))
        self._batch = None
