"""Tokenize + pack throughput: ours (`pretrain.tokens.pack.pack`) vs the `run_clm` baseline, same tokenizer, one run.

    python bench/data_pipeline.py [--shared ../shared/data] [--workers 2]

Corpus: >= 20 MB of real text from ../shared/data (Gutenberg books, TinyStories, Wikipedia, C4, NLTK speeches,
WikiText), one document per file / line / story. Tokenizer: GPT-2's byte-level BPE (vocab.json + merges.txt in
../shared/data/gpt2_tokenizer). Baseline: `datasets.Dataset.map(tokenize, batched=True, num_proc=workers)`
followed by `group_texts` into 1,024-token blocks, as in transformers' examples/pytorch/language-modeling/run_clm.py.
Ours encodes with tiktoken when it reproduces the tokenizer exactly (it does for GPT-2's; `pack` checks a
sample first) — `python bench/data_pipeline.py --encoder tokenizers` (the recipe key `tokenizer.encoder`)
measures ours on HF `tokenizers`.
Also measures our loader (8 x 2,048-token sequences per batch, shuffled, from the packed shards).
Last stdout line: {"bench": "tokenize_pack", "mb", "ours_mb_per_s", "baseline_mb_per_s", "speedup",
"loader_batches_per_s", "encoder"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from itertools import chain
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pretrain.commands.stages import stage_output  # noqa: E402
from pretrain.config import load_recipe  # noqa: E402
from pretrain.data.mixio import MixWriter, write_manifest  # noqa: E402
from pretrain.tokens.loader import TokenLoader  # noqa: E402
from pretrain.tokens.manifest import TokenManifest  # noqa: E402
from pretrain.tokens.pack import pack  # noqa: E402


def corpus(shared: Path) -> list[str]:
    docs = []
    for path in sorted((shared / "gutenberg").glob("*.txt")):
        docs.append(path.read_text(encoding="utf-8-sig", errors="replace"))
    for path in sorted((shared / "nltk_state_union").glob("*.txt")) + sorted(
        (shared / "nltk_inaugural").glob("*.txt")
    ):
        docs.append(path.read_bytes().decode("utf-8", errors="replace"))
    for path in sorted((shared / "tinystories").glob("*.txt")):
        docs += [d for d in path.read_text(encoding="utf-8").split("\n\n") if d.strip()]
    docs += [
        ln
        for ln in (shared / "wiki_demo" / "wiki_demo.txt").read_text(encoding="utf-8").splitlines()
        if ln.strip()
    ]
    for path in sorted((shared / "wikitext2_tokens").glob("*.txt")):
        docs += [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    docs += [json.loads(ln)["text"] for ln in (shared / "c4_demo" / "c4_demo.jsonl").read_text().splitlines()]
    return docs


def gpt2_tokenizer(shared: Path, out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    d = shared / "gpt2_tokenizer"
    tok = Tokenizer(models.BPE.from_file(str(d / "gpt2_vocab.json"), str(d / "gpt2_merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    hf.save_pretrained(out)
    return hf


def baseline(texts: list[str], tokenizer, workers: int, block: int = 1024) -> float:
    import datasets

    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_dict({"text": texts})
    start = time.perf_counter()
    tokenized = ds.map(
        lambda b: tokenizer(b["text"]), batched=True, num_proc=workers, remove_columns=["text"]
    )

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples}  # as run_clm.py
        total = len(concatenated["input_ids"]) // block * block
        return {k: [t[i : i + block] for i in range(0, total, block)] for k, t in concatenated.items()}

    grouped = tokenized.map(group_texts, batched=True, num_proc=workers)
    assert len(grouped) > 0
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--encoder", choices=("auto", "tiktoken", "tokenizers"), default="auto", help="tokenizer.encoder"
    )
    args = p.parse_args()
    texts = corpus(args.shared)
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        (run / "mix").mkdir(parents=True)
        writer = MixWriter(run / "mix", "shared", 0)
        for i, t in enumerate(texts):
            writer.write({"key": i, "id": f"doc{i}", "source": "shared", "text": t})
        shards = writer.close()
        entry = {"weight": 1, "share": 1.0, "docs": len(texts), "bytes": sum(s["bytes"] for s in shards)}
        write_manifest(run / "mix", {"shared": {**entry, "shards": shards}}, seed=0)
        tok = gpt2_tokenizer(args.shared, run / "tokenizer")
        recipe = load_recipe(
            REPO / "recipes" / "tiny" / "config.yaml",
            output_dir=str(run),
            overrides=[
                f"data.workers={args.workers}",
                "data.val_fraction=0.01",
                f"tokenizer.encoder={args.encoder}",
                "data.mixture.target_bytes=null",  # every document once
            ],
        )
        out = run / "tokens"
        start = time.perf_counter()
        summary = pack(recipe, stage_output(recipe, "pack"))
        ours = time.perf_counter() - start
        encoder = TokenManifest.read(out).encoder
        base = baseline(texts, tok, args.workers)
        loader = TokenLoader(out, "train", 2048, 8, seed=0)
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < 3:
            next(loader)
            n += 1
        lps = n / (time.perf_counter() - start)
    print(
        f"corpus {mb:.1f} MB, {len(texts):,} docs, {summary['train_tokens'] + summary['val_tokens']:,} GPT-2 tokens"
    )
    print(f"ours (pack, {args.workers} workers, {encoder} encoder): {ours:.1f} s = {mb / ours:.2f} MB/s")
    print(
        f"baseline (datasets.map + group_texts, num_proc={args.workers}): {base:.1f} s = {mb / base:.2f} MB/s"
    )
    print(f"loader: {lps:,.0f} batches/s of 8 x 2048 tokens")
    print(
        json.dumps(
            {
                "bench": "tokenize_pack",
                "mb": round(mb, 2),
                "ours_mb_per_s": round(mb / ours, 3),
                "baseline_mb_per_s": round(mb / base, 3),
                "speedup": round(base / ours, 2),
                "loader_batches_per_s": round(lps, 1),
                "encoder": encoder,
            }
        )
    )


if __name__ == "__main__":
    main()
