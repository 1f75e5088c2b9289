"""How the data path's cost grows with its input: curate -> tokenizer -> pack on the local executor with 1, 2 and
4 tasks on 1x the input and 4 tasks on 1/2x, from real corpora in ../shared/data.

    python bench/data_scale.py [--input-mb 1024] [--shared ../shared/data] [--cores 2]
    python bench/data_scale.py --input-mb 16 --tasks 1 --src /tmp/before/src --save-kept before.txt

The input is built deterministically: documents are ~3 KB windows of the Gutenberg, TinyStories, Wikipedia,
C4 and speech corpora; every pass over the corpora after the first rewrites 35% of each window's words with
seeded picks from the corpora's own vocabulary (so later passes are new documents, not duplicates), and 2% of
the documents get a near-duplicate (2% of words changed) planted later in the input. Each configuration runs
the three stages as `pretrain` subprocesses; the peak RSS is the largest process's (RUSAGE_CHILDREN of a
wrapper per configuration; each run also reports its seconds per stage), read amplification is the input bytes the tasks read (curation report) over the
input's size, near_dups_found counts planted copies missing from the mix. Each run also reports its CPU seconds per
stage and input MB per CPU second: on a machine shared with other jobs the wall time includes waiting for a core.

Last stdout line: {"bench": "data_scale", "input_mb", "tasks", "read_amplification", "peak_rss_mb",
"rss_growth", "mb_per_s_per_core", "near_dups_planted", "near_dups_found", "runs": [...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# --src: run another checkout's code (e.g. the commit before a change) with this same script
SRC = Path(sys.argv[sys.argv.index("--src") + 1]).resolve() if "--src" in sys.argv else REPO / "src"
FILE_BYTES = 8 << 20  # input files of 8 MB: the units the tasks share out
WINDOW = 3000
NEAR_DUP_RATE, NEAR_DUP_EDITS, PASS_REWRITE = 0.02, 0.02, 0.35


def corpus_texts(shared: Path) -> list[str]:
    texts = []
    for pattern in (
        "gutenberg/*.txt",
        "tinystories/*.txt",
        "wiki_demo/*.txt",
        "nltk_state_union/*",
        "nltk_inaugural/*",
    ):
        for path in sorted(shared.glob(pattern)):
            if path.is_file():
                texts.append(path.read_text(encoding="utf-8", errors="replace"))
    for line in (shared / "c4_demo" / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines():
        texts.append(json.loads(line)["text"])
    return texts


def windows(texts: list[str]) -> list[str]:
    out = []
    for text in texts:
        paragraphs, chunk = re.split(r"\n\s*\n", text), ""
        for para in paragraphs:
            chunk = f"{chunk}\n\n{para}" if chunk else para
            if len(chunk) >= WINDOW:
                out.append(chunk.strip())
                chunk = ""
        if len(chunk) > 400:
            out.append(chunk.strip())
    return out


def _rewrite(text: str, rate: float, rng: random.Random, vocab: list[str]) -> str:
    words = text.split(" ")
    for i in range(len(words)):
        if rng.random() < rate:
            words[i] = rng.choice(vocab)
    return " ".join(words)


def build_input(shared: Path, folder: Path, megabytes: float) -> tuple[int, list[str]]:
    """Write ~`megabytes` of jsonl under `folder`; returns (bytes, ids of the planted near-duplicates)."""
    base = windows(corpus_texts(shared))
    vocab = sorted({w for t in base[:2000] for w in t.split() if w.isalpha() and 3 <= len(w) <= 12})
    rng = random.Random(1234)
    folder.mkdir(parents=True)
    target, written, planted, pending = int(megabytes * 1e6), 0, [], []
    file_index, fh, in_file, line = 0, None, 0, 0
    n = 0
    while written < target:
        doc = base[n % len(base)]
        epoch = n // len(base)
        if epoch:
            doc = _rewrite(doc, PASS_REWRITE, random.Random(n), vocab)
        n += 1
        docs = [(doc, False)]
        if rng.random() < NEAR_DUP_RATE:
            pending.append(_rewrite(doc, NEAR_DUP_EDITS, random.Random(-n), vocab))
        if pending and rng.random() < 0.05:  # plant a copy some way after its original
            docs.append((pending.pop(0), True))
        for text, is_copy in docs:
            if fh is None or in_file >= FILE_BYTES:
                if fh:
                    fh.close()
                path = folder / f"part-{file_index:04d}.jsonl"
                fh, in_file, line, file_index = open(path, "w", encoding="utf-8"), 0, 0, file_index + 1
            record = json.dumps({"text": text}, ensure_ascii=False) + "\n"
            fh.write(record)
            line += 1
            in_file += len(record.encode("utf-8"))
            written += len(record.encode("utf-8"))
            if is_copy:
                planted.append(f"{path}:{line}")
    fh.close()
    return written, planted


def recipe_for(work: Path, inputs: Path, tasks: int, cores: int, shared: Path) -> Path:
    raw = {
        "name": f"scale-{tasks}",
        "seed": 7,
        "output_dir": str(work / "out"),
        "data": {
            "sources": [
                {
                    "name": "web",
                    "type": "local",
                    "paths": [str(inputs)],
                    "weight": 1,
                    "filters": {"preset": "prose"},
                }
            ],
            "workers": min(tasks, cores),
            "executor": {"tasks": tasks},
            "val_fraction": 0.01,
        },
        "tokenizer": {"vocab_size": 4096, "sample_bytes": 2_000_000},
        "model": {
            "model_type": "llama",
            "hidden_size": 64,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
        },
        "train": {"seq_len": 64, "micro_batch_size": 1, "global_batch_tokens": 64, "steps": 1},
        "eval": {
            "tasks": [],
            "local_tasks": [
                {
                    "name": "arc_easy",
                    "format": "mc_query_choices",
                    "path": str(shared / "llmfoundry_eval" / "arc_easy.jsonl"),
                }
            ],
        },
    }
    path = work / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def measure(recipe: Path) -> None:
    """Wrapper mode: run the three stages; print seconds and the largest descendant's peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    start = time.perf_counter()
    stage_seconds, stage_cpu_seconds = {}, {}

    def cpu() -> float:  # user + system seconds of the finished stage processes and their children
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    for stage in ("curate", "tokenizer", "pack"):
        begin, begin_cpu = time.perf_counter(), cpu()
        subprocess.run([sys.executable, "-m", "pretrain", stage, str(recipe)], check=True, env=env)
        stage_seconds[stage] = round(time.perf_counter() - begin, 1)
        stage_cpu_seconds[stage] = round(cpu() - begin_cpu, 1)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": peak_kb / 1024,
                "stage_seconds": stage_seconds,
                "stage_cpu_seconds": stage_cpu_seconds,
            }
        )
    )


def run(
    work: Path,
    inputs: Path,
    input_bytes: int,
    tasks: int,
    cores: int,
    shared: Path,
    planted: list[str],
    save_kept: Path | None = None,
) -> dict:
    work.mkdir(parents=True)
    recipe = recipe_for(work, inputs, tasks, cores, shared)
    proc = subprocess.run(
        [sys.executable, __file__, "--_measure", str(recipe), "--src", str(SRC)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        sys.exit(f"run with {tasks} tasks failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    report = json.loads((work / "out" / "curation_report.json").read_text())
    src = report["sources"][0]
    sys.path.insert(0, str(SRC))
    from pretrain.data.mixio import iter_documents

    kept = {d["id"] for d in iter_documents(work / "out" / "mix")}
    if save_kept:  # the kept document ids, one per line with the source path made relative to the input
        save_kept.write_text("".join(f"{Path(i).relative_to(inputs)}\n" for i in sorted(kept)))
    return {
        "input_mb": round(input_bytes / 1e6, 1),
        "tasks": tasks,
        "seconds": round(result["seconds"], 1),
        "stage_seconds": result["stage_seconds"],
        # CPU seconds per stage: on a shared machine the wall time also counts waiting for a core
        "stage_cpu_seconds": result["stage_cpu_seconds"],
        "mb_per_cpu_second": round(input_bytes / 1e6 / sum(result["stage_cpu_seconds"].values()), 3),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "read_amplification": round(src["read"]["input_bytes"] / input_bytes, 4),
        "mb_per_s_per_core": round(input_bytes / 1e6 / result["seconds"] / min(tasks, cores), 3),
        "near_dups_found": sum(1 for i in planted if i not in kept),
        "near_dup_drops": src["dropped"].get("near_dup", {}).get("docs", 0),
        "exact_dup_drops": src["dropped"].get("exact_dup", {}).get("docs", 0),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input-mb", type=float, default=1024)
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="processes the tasks run on")
    p.add_argument("--tasks", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--src", type=Path, help="the src/ folder whose code runs (default: this checkout's)")
    p.add_argument(
        "--save-kept", type=Path, help="write the kept document ids of the first 1x run to this file"
    )
    p.add_argument("--_measure", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._measure:
        return measure(args._measure)
    if not args.shared.is_dir():
        sys.exit(f"{args.shared}: not found (this bench needs ../shared/data)")
    runs = []
    with tempfile.TemporaryDirectory(prefix="data-scale-") as tmp:
        tmp = Path(tmp)
        full_bytes, planted = build_input(args.shared, tmp / "input-1x", args.input_mb)
        half_bytes, half_planted = build_input(args.shared, tmp / "input-half", args.input_mb / 2)
        for tasks in args.tasks:
            runs.append(
                run(
                    tmp / f"1x-t{tasks}",
                    tmp / "input-1x",
                    full_bytes,
                    tasks,
                    args.cores,
                    args.shared,
                    planted,
                    args.save_kept if not runs else None,
                )
            )
            print(json.dumps(runs[-1]), flush=True)
        biggest = max(args.tasks)
        half = run(
            tmp / f"half-t{biggest}",
            tmp / "input-half",
            half_bytes,
            biggest,
            args.cores,
            args.shared,
            half_planted,
        )
        print(json.dumps(half), flush=True)
    full = next(r for r in runs if r["tasks"] == biggest)
    one = runs[0]
    print(
        json.dumps(
            {
                "bench": "data_scale",
                "input_mb": full["input_mb"],
                "tasks": args.tasks,
                "read_amplification": max(r["read_amplification"] for r in runs + [half]),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                "rss_growth": round(full["peak_rss_mb"] / half["peak_rss_mb"], 3),
                "mb_per_s_per_core": one["mb_per_s_per_core"],
                "near_dups_planted": len(planted),
                "near_dups_found": full["near_dups_found"],
                "runs": runs + [{**half, "input": "half"}],
            }
        )
    )


if __name__ == "__main__":
    main()
