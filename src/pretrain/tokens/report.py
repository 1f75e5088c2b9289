"""Tokenizer report: compression per source on held-out text, vocab usage, round-trip check.

`tokenizer/tokenizer_report.json`: `vocab_size`, `special_tokens`, `sources {name: {bytes, tokens,
bytes_per_token, reference_bytes_per_token, roundtrip_failures}}`, `overall_bytes_per_token`,
`vocab_used_fraction`, `reference` (path or null). A tokenizer extended from a parent (`tokenizer.extend`) adds
`parent_bytes_per_token` (per source and overall: the parent tokenizer on the same held-out text) and `extension`
{parent, parent_vocab_size, added_tokens, learnt, listed}. Markdown twin: `tokenizer_report.md`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from tokenizers import decoders as tk_decoders

from pretrain.core.errors import StageError


def load_reference(path: Path) -> Tokenizer:
    """A reference tokenizer: a folder with tokenizer.json, or GPT-2 style `*vocab.json` + `*merges.txt`."""
    path = Path(path)
    if (path / "tokenizer.json").exists():
        return Tokenizer.from_file(str(path / "tokenizer.json"))
    vocab = next(iter(sorted(path.glob("*vocab.json"))), None)
    merges = next(iter(sorted(path.glob("*merges.txt"))), None)
    if vocab is None or merges is None:
        raise StageError(f"{path}: reference tokenizer needs tokenizer.json or vocab.json + merges.txt")
    tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk_decoders.ByteLevel()
    return tok


def write_report(
    out: Path,
    hf_tokenizer,
    heldout: dict[str, list[str]],
    recipe,
    parent=None,
    extension: dict | None = None,
) -> dict:
    """Write the report of `hf_tokenizer` on the held-out texts; `parent` (an extended tokenizer's parent) is
    measured on the same texts, beside it."""
    ref_path = getattr(recipe.tokenizer, "reference", None)
    reference = load_reference(recipe.resolve_path(ref_path)) if ref_path else None
    backend = hf_tokenizer.backend_tokenizer
    used: set[int] = set()
    sources, total_bytes, total_tokens, parent_tokens = {}, 0, 0, 0
    for name, texts in sorted(heldout.items()):
        encs = backend.encode_batch_fast(texts, add_special_tokens=False)
        nbytes = sum(len(t.encode("utf-8")) for t in texts)
        ntok = sum(len(e.ids) for e in encs)
        failures = sum(backend.decode(e.ids, skip_special_tokens=False) != t for e, t in zip(encs, texts))
        for e in encs:
            used.update(e.ids)
        entry = {
            "docs": len(texts),
            "bytes": nbytes,
            "tokens": ntok,
            "bytes_per_token": round(nbytes / max(ntok, 1), 3),
            "roundtrip_failures": failures,
        }
        if reference is not None:
            rtok = sum(len(e.ids) for e in reference.encode_batch_fast(texts, add_special_tokens=False))
            entry["reference_bytes_per_token"] = round(nbytes / max(rtok, 1), 3)
        if parent is not None:
            ptok = sum(
                len(e.ids)
                for e in parent.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)
            )
            entry["parent_bytes_per_token"] = round(nbytes / max(ptok, 1), 3)
            parent_tokens += ptok
        sources[name] = entry
        total_bytes += nbytes
        total_tokens += ntok
    report = {
        "vocab_size": len(hf_tokenizer),
        "special_tokens": hf_tokenizer.all_special_tokens,
        "bos_token": hf_tokenizer.bos_token,
        "eos_token": hf_tokenizer.eos_token,
        "pad_token": hf_tokenizer.pad_token,
        "model_max_length": hf_tokenizer.model_max_length,
        "reference": str(ref_path) if ref_path else None,
        "sources": sources,
        "overall_bytes_per_token": round(total_bytes / max(total_tokens, 1), 3),
        "vocab_used_fraction": round(len(used) / max(len(hf_tokenizer), 1), 4),
    }
    if parent is not None:
        report["parent_bytes_per_token"] = round(total_bytes / max(parent_tokens, 1), 3)
        report["extension"] = extension
    (out / "tokenizer_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Tokenizer report",
        "",
        f"vocab {report['vocab_size']:,}, held-out bytes/token "
        f"{report['overall_bytes_per_token']}, vocab used {report['vocab_used_fraction']:.1%}",
        "",
    ]
    if parent is not None:
        lines += [
            f"extended from {extension['parent']} ({extension['parent_vocab_size']:,} ids) with "
            f"{extension['added_tokens']} tokens ({extension['learnt']} learnt on the mix, {extension['listed']} "
            f"listed); the parent's held-out bytes/token {report['parent_bytes_per_token']}",
            "",
        ]
    lines += [
        "| source | held-out bytes | bytes/token | reference bytes/token | round-trip failures |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in sources.items():
        lines.append(
            f"| {name} | {s['bytes']:,} | {s['bytes_per_token']} | {s.get('reference_bytes_per_token', 'n/a')} | "
            f"{s['roundtrip_failures']} |"
        )
    (out / "tokenizer_report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report
