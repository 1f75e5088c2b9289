"""Per-stage cost of curation's per-document pass, in MB/s on one core, over a fixed sample of real corpora.

    python bench/data_stages.py [--shared ../shared/data] [--mb 2] [--repeat 1]

The sample is data_scale.py's ~3 KB windows of the Gutenberg, TinyStories, Wikipedia, C4 and speech corpora,
taken evenly spaced until `--mb` megabytes. Each stage is timed alone over the whole sample (so a filter's
figure includes its own word splitting), in one process, one core. Stages: normalisation, the word split,
each quality filter, decontamination (13-grams of ARC-Easy), the MinHash band keys, the exact key, record
writing, and the whole DocumentProcessor as the worker calls it (normalise -> filters -> decontaminate ->
signatures). Tokenizer training and packing are timed per stage by data_scale.py.

Last stdout line: {"bench": "data_stages", "mb": ..., "mb_per_s": {stage: MB/s per core, ...}}.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# --src: time another checkout's code (e.g. the commit before a change) with this same script
SRC = Path(sys.argv[sys.argv.index("--src") + 1]) if "--src" in sys.argv else REPO / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(REPO / "bench"))

from data_scale import corpus_texts, windows  # noqa: E402

from pretrain.config.data import DedupConfig, NormalizeConfig  # noqa: E402
from pretrain.config.sources import FilterConfig  # noqa: E402
from pretrain.data import filters as filters_mod  # noqa: E402
from pretrain.data.decontam import ContaminationIndex  # noqa: E402
from pretrain.data.dedup import MinHasher, exact_key64  # noqa: E402
from pretrain.data.normalize import normalize  # noqa: E402
from pretrain.data.records import write_kept  # noqa: E402


def sample(shared: Path, megabytes: float) -> list[str]:
    docs = windows(corpus_texts(shared))
    target = int(megabytes * 1e6)
    total = sum(len(d.encode("utf-8")) for d in docs)
    step = max(1, round(total / target))
    out, size = [], 0
    for d in docs[::step]:
        out.append(d)
        size += len(d.encode("utf-8"))
        if size >= target:
            break
    return out


def eval_texts(shared: Path) -> dict[str, list[str]]:
    path = shared / "llmfoundry_eval" / "arc_easy.jsonl"
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {"arc_easy": [f"{i['query']} {c}" for i in items for c in i["choices"]]}


def document_pass_fn(shared: Path, task_texts: dict[str, list[str]]):
    """The worker's whole per-document step: DocumentProcessor, then the signatures of a kept document."""
    import tempfile

    from data_scale import recipe_for

    from pretrain.config import load_recipe
    from pretrain.data import worker
    from pretrain.data.dedup import word_hashes, words
    from pretrain.data.records import KIND_EXACT, KIND_NEAR, SignatureRuns

    folder = Path(tempfile.mkdtemp(prefix="data-stages-"))
    recipe = load_recipe(recipe_for(folder, folder, 1, 1, shared))
    process = worker.DocumentProcessor(recipe, task_texts)
    sigs = SignatureRuns(folder, run_records=1 << 40)

    def run(raw: str) -> None:
        status, _, doc = process(0, raw)
        if status != "ok":
            return
        if hasattr(process, "signatures"):
            process.signatures(doc, 1, sigs)
        else:  # before the shared split: the worker split the kept text again for MinHash
            sigs.add([exact_key64(doc)], 1, KIND_EXACT)
            tokens = words(doc)
            bands = process.hasher.band_keys64(doc, tokens, word_hashes(tokens))
            if len(bands):
                sigs.add(bands, 1, KIND_NEAR)

    return run


def timed(fn, docs: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for d in docs:
            fn(d)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--mb", type=float, default=2.0)
    p.add_argument("--repeat", type=int, default=1, help="time each stage this many times, keep the best")
    p.add_argument("--src", type=Path, help="the src/ folder whose code is timed (default: this checkout's)")
    args = p.parse_args()
    if not args.shared.is_dir():
        sys.exit(f"{args.shared}: not found (this bench needs ../shared/data)")
    docs = sample(args.shared, args.mb)
    norm_cfg = NormalizeConfig()
    docs = [normalize(d, norm_cfg) for d in docs]
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    stages = {"normalize": lambda t: normalize(t, norm_cfg)}
    try:  # the shared split (pretrain.data.words); before it, the filters took the text and ran spaCy
        from pretrain.data.words import DocumentWords, split_words

        if hasattr(DocumentWords, "token_ids"):  # the split as the filters use it: ids, no strings
            stages["word_split"] = lambda t: DocumentWords(t).token_ids
        else:
            stages["word_split"] = split_words
    except ImportError:
        from datatrove.utils.word_tokenizers import load_word_tokenizer

        DocumentWords = None
        stages["word_split"] = load_word_tokenizer("en").word_tokenize

    def on_text(fn):
        return fn if DocumentWords is None else (lambda t: fn(DocumentWords(t)))

    for key in ("gopher_repetition", "gopher_quality", "fineweb", "c4"):
        only = FilterConfig(
            preset="none", **{k: k == key for k in ("gopher_repetition", "gopher_quality", "fineweb", "c4")}
        )
        built = dict(filters_mod.build_filters(only))
        stages[key] = on_text(built[key])
    prose = filters_mod.build_filters(FilterConfig(preset="prose"))
    stages["prose_filters"] = lambda t: filters_mod.apply_filters(t, prose)
    contam = ContaminationIndex(eval_texts(args.shared), 13)
    stages["decontamination"] = contam.match
    d = DedupConfig()
    hasher = MinHasher(d.ngram, d.bands, d.rows, d.seed)
    stages["minhash"] = hasher.band_keys64
    stages["exact_hash"] = exact_key64
    sink = io.StringIO()
    stages["record_write"] = lambda t: write_kept(sink, 123456789, "part-0001.jsonl:17", t)
    if DocumentWords is not None:  # the shared split: decontamination + MinHash from one split

        def contam_minhash(t: str) -> None:
            w = DocumentWords(t)
            contam.match(t, w.lower_words, w.hashes)
            hasher.band_keys64(t, w.lower_words, w.hashes)

        stages["decontam+minhash"] = contam_minhash
    else:

        def contam_minhash(t: str) -> None:
            from pretrain.data.dedup import word_hashes, words

            tokens = words(t)
            hashes = word_hashes(tokens)
            contam.match(t, tokens, hashes)
            hasher.band_keys64(t, tokens, hashes)

        stages["decontam+minhash"] = contam_minhash
    stages["document_pass"] = document_pass_fn(args.shared, eval_texts(args.shared))
    results = {}
    for name, fn in stages.items():
        seconds = timed(fn, docs, args.repeat)
        results[name] = round(mb / seconds, 3)
        print(f"{name:20s} {seconds:8.2f} s  {results[name]:8.3f} MB/s", flush=True)
    print(json.dumps({"bench": "data_stages", "mb": round(mb, 2), "docs": len(docs), "mb_per_s": results}))


if __name__ == "__main__":
    main()
