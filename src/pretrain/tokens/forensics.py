"""Which documents made a training step's batch: for the spike guard's log and `pretrain inspect-batch`.

    loader.last_step_windows()                                   # (seq_len, global window ids) of the last step
    docs = step_documents(loader, seq_len, windows, tokenizer)    # [DocumentRef(source, id, text, shard, index)]
    batch = batch_at_step(loader, step)                           # any step's batch, drawn again from the loader

A window is a span of a token stream (the split's shards, or one source's); the shards' `.idx.npy` give every
document's first token and `.ids.txt` its id in the mix (shards packed before ids were recorded name a document
`<shard file>#<n>`, its place in the shard). A document's text is its first tokens decoded. The loader's order
depends only on (seed, data, global batch, stages), so drawing step N again gives the windows training read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pretrain.core.errors import DataError
from pretrain.tokens.loader import WindowLoader
from pretrain.tokens.manifest import TokenShard

PREVIEW_TOKENS = 32  # decoded from a document's start for its `text`
PREVIEW_CHARS = 80


@dataclass(frozen=True)
class DocumentRef:
    """A document of a batch: its source, its id in the mix, its first characters, and where it is packed."""

    source: str
    id: str
    text: str
    shard: str
    index: int  # the document's number in its shard

    def to_json(self) -> dict:
        return {"source": self.source, "id": self.id, "text": self.text}


@dataclass
class StepBatch:
    """One optimizer step's global batch as the loader draws it."""

    data_step: int  # global batches drawn before it
    seq_len: int
    windows: np.ndarray  # global window ids, in the order ranks and micro steps read them
    rows: np.ndarray  # [windows, seq_len + 1] tokens: inputs and labels shifted by one


class DocumentIndex:
    """Document boundaries and ids of one stream of shards (empty shards are not part of a stream)."""

    def __init__(self, tokens_dir: Path, shards: list[TokenShard], dtype: str):
        self.dir, self.dtype = Path(tokens_dir), np.dtype(dtype)
        self.shards = [s for s in shards if s.tokens]
        self.starts = np.concatenate([[0], np.cumsum([s.tokens for s in self.shards])]).astype(np.int64)
        self._offsets: dict[int, np.ndarray] = {}
        self._ids: dict[int, list[str] | None] = {}

    def offsets(self, i: int) -> np.ndarray:
        if i not in self._offsets:
            self._offsets[i] = np.load(self.dir / self.shards[i].index)
        return self._offsets[i]

    def doc_id(self, i: int, k: int) -> str:
        if i not in self._ids:
            listed = self.shards[i].ids
            path = self.dir / listed if listed else None
            self._ids[i] = path.read_text(encoding="utf-8").splitlines() if path and path.exists() else None
        ids = self._ids[i]
        return ids[k] if ids is not None and k < len(ids) else f"{self.shards[i].file}#{k}"

    def spans(self, start: int, length: int) -> list[tuple[int, int]]:
        """(shard, document number) of every document with a token in [start, start + length) of the stream."""
        found = []
        i = int(np.searchsorted(self.starts, start, side="right") - 1)
        end = start + length
        while i < len(self.shards) and self.starts[i] < end:
            lo, hi = (
                max(start, int(self.starts[i])) - self.starts[i],
                min(end, int(self.starts[i + 1])) - self.starts[i],
            )
            offsets = self.offsets(i)
            first = max(int(np.searchsorted(offsets, lo, side="right") - 1), 0)
            last = int(np.searchsorted(offsets, hi - 1, side="right") - 1)
            found += [(i, k) for k in range(first, last + 1)]
            i += 1
        return found

    def document_tokens(self, i: int, k: int, n: int) -> np.ndarray:
        """The first `n` tokens of document k of shard i (fewer when it is shorter)."""
        offsets, shard = self.offsets(i), self.shards[i]
        end = int(offsets[k + 1]) if k + 1 < len(offsets) else shard.tokens
        start = int(offsets[k])
        data = np.memmap(self.dir / shard.file, dtype=self.dtype, mode="r")
        return np.asarray(data[start : min(end, start + n)], dtype=np.int64)


def step_documents(loader: WindowLoader, seq_len: int, windows: np.ndarray, tokenizer) -> list[DocumentRef]:
    """The documents the windows of one step hold, each once, in the order the windows first reach them."""
    indexes: dict[int, DocumentIndex] = {}
    seen: dict[tuple[int, int, int], DocumentRef] = {}
    for window in windows:
        shards, start = loader.window_source(int(window), seq_len)
        if id(shards) not in indexes:
            indexes[id(shards)] = DocumentIndex(loader.dir, shards, loader.manifest.dtype)
        index = indexes[id(shards)]
        for i, k in index.spans(start, seq_len + 1):
            key = (id(shards), i, k)
            if key in seen:
                continue
            shard = index.shards[i]
            text = tokenizer.decode(
                index.document_tokens(i, k, PREVIEW_TOKENS).tolist(), skip_special_tokens=True
            )
            seen[key] = DocumentRef(
                source=shard.file.split("/", 1)[0] if "/" in shard.file else "",
                id=index.doc_id(i, k),
                text=" ".join(text.split())[:PREVIEW_CHARS],
                shard=shard.file,
                index=k,
            )
    return list(seen.values())


def batch_at_step(loader: WindowLoader, step: int) -> StepBatch:
    """Global batch `step` (0-based: the batch of optimizer step step + 1 in a run without rollbacks), drawn
    by `loader` from where it stands; a loader already past it cannot go back (make a fresh one)."""
    if hasattr(loader, "seek_step"):
        loader.seek_step(step)
    elif loader.data_step > step:
        raise DataError(f"{loader.dir}: the loader already drew batch {step}; start from an earlier state")
    else:
        loader.skip_steps(step - loader.data_step)
    seq_len, windows = loader.next_global_batch()
    rows = np.stack([loader.window_tokens(int(w), seq_len) for w in windows])
    return StepBatch(step, seq_len, np.asarray(windows), rows)
