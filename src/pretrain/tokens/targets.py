"""How many tokens each source and mix file gives the packed mix, and which documents give them.

The recipe's weights are shares of TOKENS: `plan_tokens` (cheap: it tokenizes a small sample per source) turns
them and the mixture size into a token target per source and per mix file (in proportion to its bytes).
`sample_file` then visits a file's documents in a seeded random order and encodes them until the file's target
is reached, whole passes again when a source is repeated (`max_epochs` caps it), so each source's realised
token count is its target to within about one document per file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from pretrain.config import Recipe
from pretrain.core.progress import get_logger
from pretrain.data.mixio import iter_documents, read_at, read_manifest, shard_offsets
from pretrain.tokens.encoder import DocumentEncoder

log = get_logger("pretrain.pack")

BPT_SAMPLE_BYTES = 1 << 18  # per source: text tokenized up front to estimate its bytes per token
CHUNK_DOCS = 64  # documents encoded per batch


def plan_tokens(recipe: Recipe, encoder: DocumentEncoder) -> dict:
    """Token targets per source and per mix file, from the weights, the mixture size and sampled bytes/token."""
    manifest = read_manifest(recipe.layout.mix)
    sources = manifest["sources"]
    bpt = {}
    for name in sources:
        texts, size = [], 0
        for rec in iter_documents(recipe.layout.mix, {name}):
            texts.append(rec["text"])
            size += len(rec["text"].encode("utf-8"))
            if size >= BPT_SAMPLE_BYTES:
                break
        tokens = sum(len(ids) for ids in encoder.encode(texts)) if texts else 0
        bpt[name] = size / tokens if tokens else 1.0
    total_w = sum(e["weight"] for e in sources.values())
    share = {name: e["weight"] / total_w for name, e in sources.items()}
    available = {name: e["bytes"] / bpt[name] for name, e in sources.items()}
    mix = recipe.data.mixture
    if mix.target_tokens:
        total = mix.target_tokens
    elif mix.target_bytes:  # bytes of text in the mix: tokens * the share-weighted bytes per token
        total = mix.target_bytes / sum(share[n] * bpt[n] for n in sources)
    else:  # the largest mix that repeats nothing
        total = min(available[n] / share[n] for n in sources)
    plan = {"total_tokens": int(total), "sources": {}, "files": []}
    for idx, (name, e) in enumerate(sources.items()):
        target = share[name] * total
        max_tokens = e.get("max_epochs", 4.0) * available[name]
        capped = target > max_tokens * 1.0001
        if capped:
            log.warning(
                "source %r: only ~%d clean tokens; capped at max_epochs, its share falls short",
                name,
                available[name],
            )
            target = max_tokens
        plan["sources"][name] = {
            "share": share[name],
            "target_tokens": int(round(target)),
            "bytes_per_token": bpt[name],
            "available_tokens": int(available[name]),
            "capped": capped,
        }
        for position, shard in enumerate(e["shards"]):
            plan["files"].append(
                {
                    "source": name,
                    "source_idx": idx,
                    "file": shard["file"],
                    "target_tokens": target * shard["bytes"] / max(e["bytes"], 1),
                    "first_of_source": position == 0,  # gives the val split a document if it has none
                }
            )
    return plan


def file_seed(seed: int, file: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{file}".encode(), digest_size=8).digest(), "little")


def sample_file(path: Path, target: float, seed: int, encoder: DocumentEncoder):
    """Yield `(record, ids, repeat)` in a seeded order until the tokens reach about `target`.

    Each pass visits the documents in a new seeded order and takes every one that still fits under the
    target; the smallest one that did not fit is added at the end of the pass when that lands closer to the
    target than stopping short. Passes repeat (repeat = 1, 2, ...) while they add anything and the target is
    not reached: a source short of its share is repeated in whole passes, then sampled.

    Every document's token count is remembered from its first encoding, so a later pass reads and encodes
    only the documents that can still fit (a last pass that tops up a few tokens costs a few documents,
    not the file again); the documents taken are the same as encoding every one.
    """
    offsets = shard_offsets(path)
    if not offsets or target <= 0:
        return
    lengths = np.zeros(len(offsets), dtype=np.int64)  # 0: not encoded yet (an encoded document has EOS)
    got, repeat = 0, 0
    with open(path, encoding="utf-8") as fh:

        def encoded(positions: list[int]) -> dict[int, tuple[dict, np.ndarray]]:
            records = [read_at(fh, offsets[i]) for i in positions]
            out = dict(zip(positions, zip(records, encoder.encode([r["text"] for r in records]))))
            for i, (_, ids) in out.items():
                lengths[i] = len(ids)
            return out

        while got < target:
            order = np.random.default_rng([seed, repeat]).permutation(len(offsets)).tolist()
            added, smallest = 0, None  # smallest: (tokens, position) of the smallest that did not fit
            for start in range(0, len(order), CHUNK_DOCS):
                chunk = order[start : start + CHUNK_DOCS]
                # `got` only grows within the chunk: a known length that does not fit now never will
                held = encoded([i for i in chunk if not lengths[i] or got + lengths[i] <= target])
                for i in chunk:
                    n = int(lengths[i])
                    if got + n <= target:
                        yield held[i][0], held[i][1], repeat
                        got, added = got + n, added + n
                    elif smallest is None or n < smallest[0]:
                        smallest = (n, i)
                if got >= target:
                    return
            if smallest is not None and got + smallest[0] - target < target - got:
                rec, ids = encoded([smallest[1]])[smallest[1]]
                yield rec, ids, repeat
                return
            if added == 0:
                return
            repeat += 1
