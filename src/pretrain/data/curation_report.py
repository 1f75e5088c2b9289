"""The curation report: per source and per stage, docs/bytes in -> out, why, and the achieved mix.

`curation_report.json` keys (read by the model card): `sources[]` with `name, type, weight,
requested_share, achieved_share, read {docs, bytes, undecodable_bytes, files, input_bytes}, dropped {class:
{docs, bytes, reasons{}, examples[]}}, kept {docs, bytes}`; `contamination {task: hits}`;
`totals {read_docs, read_bytes, kept_docs, kept_bytes}`. `requested_share` is the normalised weight (a share
of the training tokens, realised by `pretrain pack`: tokens/manifest.json); `achieved_share` here is the
source's share of the clean bytes, before mixing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pretrain.core.progress import human

EXAMPLES_PER_CLASS = 3
EXAMPLE_CHARS = 240  # characters of a dropped document shown as an example
REPORT_FILES = ("curation_report.json", "curation_report.md")  # in mix/, copied to the run folder


@dataclass
class SourceReport:
    name: str
    type: str
    weight: float
    read_docs: int = 0
    read_bytes: int = 0
    undecodable_bytes: int = 0
    files: int = 0
    input_bytes: int = 0
    dropped: dict = field(default_factory=dict)
    kept_docs: int = 0
    kept_bytes: int = 0
    requested_share: float = 0.0
    achieved_share: float = 0.0

    def set_kept(self, docs: int, nbytes: int, share: float) -> None:
        self.kept_docs, self.kept_bytes, self.requested_share = docs, nbytes, share

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "weight": self.weight,
            "requested_share": round(self.requested_share, 4),
            "achieved_share": round(self.achieved_share, 4),
            "read": {
                "docs": self.read_docs,
                "bytes": self.read_bytes,
                "undecodable_bytes": self.undecodable_bytes,
                "files": self.files,
                "input_bytes": self.input_bytes,
            },
            "dropped": self.dropped,
            "kept": {"docs": self.kept_docs, "bytes": self.kept_bytes},
        }


def merge_dropped(into: dict, dropped: dict) -> None:
    """Add one task's dropped-document statistics of a source (counts, reasons, examples) into `into`."""
    for cls, d in dropped.items():
        entry = into.setdefault(cls, {"docs": 0, "bytes": 0, "reasons": {}, "examples": []})
        entry["docs"] += d["docs"]
        entry["bytes"] += d["bytes"]
        for reason, n in d["reasons"].items():
            entry["reasons"][reason] = entry["reasons"].get(reason, 0) + n
        entry["examples"] += d["examples"]


def write_reports(
    out: Path,
    recipe,
    reports: list[SourceReport],
    task_texts: dict[str, list[str]],
    unchecked: dict[str, str] | None = None,
    provenance: list[dict] | None = None,
) -> None:
    """`curation_report.json` and `.md` in `out`; `provenance`: each source's row (data/provenance.py)."""
    contamination: dict[str, int] = {task: 0 for task in task_texts}
    for rep in reports:
        for task, n in rep.dropped.get("contamination", {}).get("reasons", {}).items():
            contamination[task] = contamination.get(task, 0) + n
    data = {
        "recipe": recipe.name,
        "sources": [
            {**r.to_json(), **({"provenance": provenance[i]} if provenance else {})}
            for i, r in enumerate(reports)
        ],
        "contamination": contamination,
        "contamination_unchecked": unchecked or {},
        "decontamination_ngram": recipe.data.decontaminate.ngram
        if recipe.data.decontaminate.enabled
        else None,
        "totals": {
            "read_docs": sum(r.read_docs for r in reports),
            "read_bytes": sum(r.read_bytes for r in reports),
            "kept_docs": sum(r.kept_docs for r in reports),
            "kept_bytes": sum(r.kept_bytes for r in reports),
        },
    }
    json_name, md_name = REPORT_FILES
    (out / json_name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / md_name).write_text(render_markdown(data), encoding="utf-8")


def render_markdown(data: dict) -> str:
    lines = [
        f"# Curation report — {data['recipe']}",
        "",
        "## Mixture",
        "",
        "| source | type | docs read | bytes read | kept docs | kept bytes | share of clean bytes | requested token share |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in data["sources"]:
        lines.append(
            f"| {s['name']} | {s['type']} | {s['read']['docs']:,} | {human(s['read']['bytes'], 'B')} | {s['kept']['docs']:,} | "
            f"{human(s['kept']['bytes'], 'B')} | {s['achieved_share']:.1%} | {s['requested_share']:.1%} |"
        )
    lines += [
        "",
        "## Removed",
        "",
        "| source | stage | docs | bytes | top reasons |",
        "|---|---|---:|---:|---|",
    ]
    for s in data["sources"]:
        for cls, d in sorted(s["dropped"].items(), key=lambda kv: -kv[1]["docs"]):
            reasons = ", ".join(
                f"{k} ({v})" for k, v in sorted(d["reasons"].items(), key=lambda kv: -kv[1])[:3]
            )
            lines.append(f"| {s['name']} | {cls} | {d['docs']:,} | {human(d['bytes'], 'B')} | {reasons} |")
    lines += ["", "## Decontamination", ""]
    if data["contamination"]:
        lines += [f"- {task}: {hits} documents removed" for task, hits in data["contamination"].items()]
    else:
        lines.append("- no evaluation task with items to check against")
    lines += [f"- {task}: **not checked** ({why})" for task, why in data["contamination_unchecked"].items()]
    t = data["totals"]
    lines += [
        "",
        f"Total: {t['read_docs']:,} documents ({human(t['read_bytes'], 'B')}) read → "
        f"{t['kept_docs']:,} clean documents ({human(t['kept_bytes'], 'B')}); `pretrain pack` mixes them by token share.",
        "",
    ]
    return "\n".join(lines)
