"""Per-document work done in the curation worker processes: normalise, filter, decontaminate, hash.

State (filters per source, the MinHasher, the contamination index) is built once per process by
`init_worker`, because datatrove filters and the n-gram index are costly to pickle per chunk.
"""

from __future__ import annotations

from pretrain.data.decontam import ContaminationIndex
from pretrain.data.dedup import MinHasher, exact_key
from pretrain.data.filters import apply_filters, build_filters
from pretrain.data.normalize import normalize

_STATE: dict = {}


def init_worker(source_filters, normalize_cfg, dedup_cfg, task_texts, ngram) -> None:
    _STATE["filters"] = [(build_filters(cfg), patterns) for cfg, patterns in source_filters]
    _STATE["normalize"] = normalize_cfg
    _STATE["hasher"] = (
        MinHasher(dedup_cfg.ngram, dedup_cfg.bands, dedup_cfg.rows, dedup_cfg.seed)
        if dedup_cfg.near
        else None
    )
    _STATE["contam"] = ContaminationIndex(task_texts, ngram)


def process_chunk(chunk: list[tuple[int, str, str]]) -> list[tuple]:
    """-> [(source_idx, doc_id, status, detail, text, exact_key, band_keys)]; status 'ok' or a drop class."""
    out = []
    hasher, contam = _STATE["hasher"], _STATE["contam"]
    for idx, doc_id, raw in chunk:
        filters, patterns = _STATE["filters"][idx]
        text = normalize(raw, _STATE["normalize"], patterns)
        if not text.strip():
            out.append((idx, doc_id, "empty", "", raw, b"", []))
            continue
        dropped = apply_filters(text, filters)
        if dropped:
            out.append((idx, doc_id, f"filter:{dropped[0]}", dropped[1], text, b"", []))
            continue
        task = contam.match(text) if contam else None
        if task:
            out.append((idx, doc_id, "contamination", task, text, b"", []))
            continue
        bands = hasher.band_keys(text) if hasher else []
        out.append((idx, doc_id, "ok", "", text, exact_key(text), bands))
    return out
