"""Curation throughput on >= 20 MB of real corpora from ../shared/data (Gutenberg, TinyStories, Wikipedia, C4,
NLTK speeches, WikiText), with the prose filters, exact + MinHash dedup and 13-gram decontamination against
the ARC-Easy / COPA / LAMBADA benchmark files.

    python bench/curation.py [--shared ../shared/data] [--workers 2]

Last stdout line: {"bench": "curation", "mb", "seconds", "mb_per_s", "workers", "peak_rss_mb", ...}.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pretrain.commands.run import run_stage  # noqa: E402
from pretrain.config import load_recipe  # noqa: E402


def sources(shared: Path) -> list[dict]:
    prose = {"preset": "prose"}
    return [
        {
            "name": "gutenberg",
            "type": "local",
            "paths": [str(shared / "gutenberg")],
            "weight": 0.5,
            "strip_patterns": ["gutenberg"],  # the named Project Gutenberg header/footer pattern
            "filters": prose,
        },
        {
            "name": "tinystories",
            "type": "local",
            "paths": [str(shared / "tinystories")],
            "doc_split": "paragraph",
            "weight": 0.1,
            "filters": {"preset": "prose", "gopher_quality": False},
        },
        {
            "name": "wiki",
            "type": "local",
            "paths": [str(shared / "wiki_demo" / "wiki_demo.txt"), str(shared / "wikitext2_tokens")],
            "doc_split": "line",
            "weight": 0.15,
            "filters": prose,
        },
        {
            "name": "c4",
            "type": "local",
            "paths": [str(shared / "c4_demo" / "c4_demo.jsonl")],
            "weight": 0.1,
            "filters": prose,
        },
        {
            "name": "speeches",
            "type": "local",
            "paths": [str(shared / "nltk_state_union"), str(shared / "nltk_inaugural")],
            "weight": 0.15,
            "filters": prose,
        },
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    if not args.shared.is_dir():
        sys.exit(f"{args.shared}: not found (this bench needs ../shared/data)")
    tasks = [
        {
            "name": "arc_easy",
            "format": "mc_query_choices",
            "path": str(args.shared / "llmfoundry_eval" / "arc_easy.jsonl"),
        },
        {
            "name": "copa",
            "format": "mc_query_choices",
            "path": str(args.shared / "llmfoundry_eval" / "copa.jsonl"),
        },
        {
            "name": "lambada",
            "format": "lambada_context",
            "path": str(args.shared / "llmfoundry_eval" / "lambada_openai.jsonl"),
        },
    ]
    with tempfile.TemporaryDirectory() as tmp:
        raw = {
            "name": "bench-curation",
            "output_dir": f"{tmp}/out",
            "data": {"sources": sources(args.shared), "workers": args.workers},
            "model": {
                "model_type": "llama",
                "hidden_size": 64,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
            },
            "train": {"seq_len": 64, "micro_batch_size": 1, "global_batch_tokens": 64, "steps": 1},
            "eval": {"tasks": [], "local_tasks": tasks},
        }
        path = Path(tmp) / "recipe.yaml"
        path.write_text(yaml.safe_dump(raw))
        recipe = load_recipe(path)
        start = time.perf_counter()
        run_stage(recipe, "curate")
        seconds = time.perf_counter() - start
        report = json.loads((recipe.out / "curation_report.json").read_text())
    read_mb = report["totals"]["read_bytes"] / 1e6
    for s in report["sources"]:
        drops = {k: v["docs"] for k, v in s["dropped"].items()}
        print(
            f"{s['name']:12s} read {s['read']['docs']:6d} docs {s['read']['bytes'] / 1e6:6.2f} MB -> kept "
            f"{s['kept']['bytes'] / 1e6:6.2f} MB ({s['achieved_share']:.1%} of clean bytes); dropped {drops}"
        )
    print(f"contamination hits: {report['contamination']}")
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    print(
        json.dumps(
            {
                "bench": "curation",
                "mb": round(read_mb, 2),
                "seconds": round(seconds, 2),
                "mb_per_s": round(read_mb / seconds, 3),
                "workers": args.workers,
                "peak_rss_mb": round(peak / 1024, 1),
                "kept_mb": round(report["totals"]["kept_bytes"] / 1e6, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
