"""The curation report: per source and per stage, docs/bytes in -> out, why, and the achieved mix.

`curation_report.json` keys (read by the model card): `sources[]` with `name, type, weight,
requested_share, achieved_share, read {docs, bytes, undecodable_bytes, files}, dropped {class:
{docs, bytes, reasons{}, examples[]}}, kept {docs, bytes}, mixed {docs, bytes, epochs, capped}`;
`contamination {task: hits}`; `totals {read_docs, read_bytes, mixed_docs, mixed_bytes}`.
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
    dropped: dict = field(default_factory=dict)
    kept_bytes: int = 0
    mixed_docs: int = 0
    mixed_bytes: int = 0
    epochs: float = 0.0
    capped: bool = False
    requested_share: float = 0.0
    achieved_share: float = 0.0

    def drop(self, cls: str, detail: str, doc_id: str, text: str, nbytes: int | None = None) -> None:
        """Count a dropped document (`nbytes`: its full size when `text` is only the example excerpt)."""
        entry = self.dropped.setdefault(cls, {"docs": 0, "bytes": 0, "reasons": {}, "examples": []})
        entry["docs"] += 1
        entry["bytes"] += len(text.encode("utf-8")) if nbytes is None else nbytes
        if detail:
            entry["reasons"][detail] = entry["reasons"].get(detail, 0) + 1
        if len(entry["examples"]) < EXAMPLES_PER_CLASS:
            entry["examples"].append({"id": doc_id, "detail": detail, "text": text[:EXAMPLE_CHARS]})

    def set_mixed(self, docs: int, nbytes: int, plan) -> None:
        self.mixed_docs, self.mixed_bytes = docs, nbytes
        self.kept_bytes = plan.available_bytes
        self.epochs, self.capped, self.requested_share = round(plan.epochs, 3), plan.capped, plan.share

    def mixture_entry(self) -> dict:
        return {
            "weight": self.weight,
            "requested_share": round(self.requested_share, 4),
            "achieved_share": round(self.achieved_share, 4),
            "docs": self.mixed_docs,
            "bytes": self.mixed_bytes,
            "epochs": self.epochs,
        }

    def to_json(self) -> dict:
        dropped_docs = sum(v["docs"] for v in self.dropped.values())
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
            },
            "dropped": self.dropped,
            "kept": {"docs": self.read_docs - dropped_docs, "bytes": self.kept_bytes},
            "mixed": {
                "docs": self.mixed_docs,
                "bytes": self.mixed_bytes,
                "epochs": self.epochs,
                "capped": self.capped,
            },
        }


def write_reports(
    out: Path,
    recipe,
    reports: list[SourceReport],
    task_texts: dict[str, list[str]],
    unchecked: dict[str, str] | None = None,
) -> None:
    contamination: dict[str, int] = {task: 0 for task in task_texts}
    for rep in reports:
        for task, n in rep.dropped.get("contamination", {}).get("reasons", {}).items():
            contamination[task] = contamination.get(task, 0) + n
    data = {
        "recipe": recipe.name,
        "sources": [r.to_json() for r in reports],
        "contamination": contamination,
        "contamination_unchecked": unchecked or {},
        "decontamination_ngram": recipe.data.decontaminate.ngram
        if recipe.data.decontaminate.enabled
        else None,
        "totals": {
            "read_docs": sum(r.read_docs for r in reports),
            "read_bytes": sum(r.read_bytes for r in reports),
            "mixed_docs": sum(r.mixed_docs for r in reports),
            "mixed_bytes": sum(r.mixed_bytes for r in reports),
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
        "| source | type | docs read | bytes read | kept docs | mixed bytes | epochs | requested | achieved |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in data["sources"]:
        lines.append(
            f"| {s['name']} | {s['type']} | {s['read']['docs']:,} | {human(s['read']['bytes'], 'B')} | {s['kept']['docs']:,} | "
            f"{human(s['mixed']['bytes'], 'B')} | {s['mixed']['epochs']:.2f} | {s['requested_share']:.1%} | {s['achieved_share']:.1%} |"
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
        f"{t['mixed_docs']:,} documents ({human(t['mixed_bytes'], 'B')}) in the mix.",
        "",
    ]
    return "\n".join(lines)
