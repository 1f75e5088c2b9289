"""`pretrain pack RECIPE`: mix the clean documents by token share and tokenize them into per-source shards.

    pretrain pack recipes/tiny/config.yaml               # -> <output_dir>/tokens/

Layout of `tokens/`:
    manifest.json                           dtype, vocab/eos/bos ids, tokenizer hash, per split shard list,
                                            per source counts, shares and shards (the format: manifest.py)
    <source>/{train,val}-FFFFF-NNN.bin      raw little-endian uint16 (vocab <= 65,535) or uint32 token ids
                                            of mix file FFFFF of that source
    <source>/{train,val}-FFFFF-NNN.idx.npy  int64 start offset of every document inside its shard
    <source>/{train,val}-FFFFF-NNN.ids.txt  each document's id in the mix (`#repN` for a repeated pass)
    val_docs.jsonl                          the val split's documents as text (held-out bits-per-byte in lm-eval)

Packing runs as executor tasks (data/executor.py), each taking whole mix files (dealt round-robin). The
weights are shares of TOKENS: before the tasks start, `plan_tokens` (cheap: it tokenizes a small sample per
source) turns the weights and the mixture size into a token target per source and per mix file (in
proportion to its bytes). A task visits a file's documents in a seeded random order and tokenizes them until
the file's target is reached — whole passes again when a source is repeated (max_epochs caps it) — so each
source's realised token count is its target to within about one document per file. The last step writes the
manifest from the tasks' statistics (no pass over the text).

Every document is `[BOS] tokens EOS` (BOS when the tokenizer adds one), so EOS separates documents.
The split is by document: a hash of (seed, document id) decides, so repeated copies of a document
land in the same split and val never shares a document with train. Encoding uses tiktoken when it
reproduces the tokenizer exactly (fast_encode.py), else HF `tokenizers`; `tokenizer.encoder` can force
either. The output depends only on the inputs, not on the number of tasks (deterministic).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path

from pretrain.config import Recipe
from pretrain.core.atomic import atomic_dir
from pretrain.core.errors import DataError
from pretrain.core.markers import StageOutput
from pretrain.core.progress import get_logger
from pretrain.data.executor import TaskStep, begin_publish, pass_tasks, prepare_work, run_steps, submit_slurm
from pretrain.data.records import is_done, progress_file, read_stats, write_stats
from pretrain.data.taskprogress import TaskProgress
from pretrain.tokens.encoder import DocumentEncoder, choose_encoder
from pretrain.tokens.manifest import SourceTokens, TokenManifest, TokenShard, TokenSplit
from pretrain.tokens.shards import ShardWriter, dtype_for
from pretrain.tokens.targets import file_seed, plan_tokens, sample_file
from pretrain.tokens.tokenizer import load_tokenizer, tokenizer_hash

log = get_logger("pretrain.pack")
PLAN = "plan.json"


# a file expecting this many val documents has none with probability < e^-20: no need to look ahead
VAL_LOOKAHEAD_DOCS = 20


def _base_id(doc_id: str) -> str:
    return doc_id.split("#rep", 1)[0]


def _val_draw(doc_id: str, seed: int) -> float:
    h = int.from_bytes(
        hashlib.blake2b(f"{seed}:{_base_id(doc_id)}".encode(), digest_size=8).digest(), "little"
    )
    return h / 2**64


def is_val(doc_id: str, seed: int, fraction: float) -> bool:
    return _val_draw(doc_id, seed) < fraction


def document_id(record: dict, repeat: int) -> str:
    """A packed document's id: its mix id, and `#repN` for its N-th repeat (the split hashes it; the shard's
    .ids.txt records it for spike forensics)."""
    return record["id"] if repeat == 0 else f"{record['id']}#rep{repeat}"


def split_documents(samples, seed: int, fraction: float, guarantee: bool):
    """`(record, ids, repeat)` of a mix file's sampled documents -> `(record, ids, repeat, split)`.

    The split is the hash rule (`is_val`). With `guarantee` (a source's first mix file), when the rule puts
    none of the file's sampled documents in val, the one with the smallest draw goes there: a source of a few
    long documents (30 articles) could otherwise end with no val tokens and no val bits/byte of its own. Only
    a file that expects few val documents is held back to decide (one expecting `VAL_LOOKAHEAD_DOCS` or more
    has none with probability < e^-20); the choice depends on the data and the seed only."""
    if guarantee:
        samples = list(samples)
        if len({rec["id"] for rec, _, _ in samples}) * fraction >= VAL_LOOKAHEAD_DOCS:
            guarantee = False
    forced = None
    if guarantee:
        bases = {rec["id"] for rec, _, _ in samples}
        if len(bases) >= 2 and not any(is_val(base, seed, fraction) for base in bases):
            forced = min(sorted(bases), key=lambda base: _val_draw(base, seed))
    for rec, ids, repeat in samples:
        val = is_val(document_id(rec, repeat), seed, fraction) or rec["id"] == forced
        yield rec, ids, repeat, "val" if val else "train"


def fingerprint_inputs(recipe: Recipe) -> dict:
    """The split seed and fraction and the mixture (weights in tokens, size, repeats)."""
    return {
        "seed": recipe.seed,
        "val_fraction": recipe.data.val_fraction,
        "mixture": recipe.data.mixture.model_dump(mode="json", exclude={"shard_docs"}),
        "weights": {s.name: [s.weight, s.max_epochs] for s in recipe.data.sources},
    }


def _val_docs_name(file_index: int) -> str:
    return f"val_docs-{file_index:05d}.jsonl"


def pack_task(recipe: Recipe, work: Path, rank: int, world: int) -> None:
    """Task `rank`: sample and tokenize its mix files into per-source shards under `tasks/t<rank>/`."""
    final = work / "tasks" / f"t{rank:05d}"
    if is_done(final):
        return
    plan = json.loads((work / PLAN).read_text())
    encoder = DocumentEncoder(recipe.layout.tokenizer, plan["encoder"] == "tiktoken")
    mine = [(i, f) for i, f in enumerate(plan["files"]) if i % world == rank]
    mix = recipe.layout.mix
    total = int(sum(f["target_tokens"] for _, f in mine))
    meter = TaskProgress(f"pack task {rank}/{world}", None, progress_file(work, "tokenize", rank))
    seed, fraction = recipe.seed, recipe.data.val_fraction
    stats = []
    with atomic_dir(final) as tmp:
        for i, f in mine:
            val_docs = open(tmp / _val_docs_name(i), "w", encoding="utf-8")
            writers = {
                s: ShardWriter(tmp, f"{f['source']}/{s}-{i:05d}", encoder.dtype) for s in ("train", "val")
            }
            counts = {"train": [0, 0], "val": [0, 0]}  # docs, bytes
            samples = sample_file(mix / f["file"], f["target_tokens"], file_seed(seed, f["file"]), encoder)
            for rec, ids, repeat, split in split_documents(
                samples, seed, fraction, guarantee=bool(f.get("first_of_source"))
            ):
                writers[split].add(ids, document_id(rec, repeat))
                nbytes = len(rec["text"].encode("utf-8"))
                counts[split][0] += 1
                counts[split][1] += nbytes
                meter.update(1, nbytes)
                if split == "val" and repeat == 0:
                    record = {"id": rec["id"], "source": rec["source"], "text": rec["text"]}
                    val_docs.write(json.dumps(record, ensure_ascii=False) + "\n")
            val_docs.close()
            stats.append(
                {
                    "file": i,
                    "source": f["source"],
                    **{
                        s: {**w.close(counts[s][1], empty_shard=False).to_json(), "docs_in": counts[s][0]}
                        for s, w in writers.items()
                    },
                }
            )
        write_stats(tmp, {"files": stats, "planned_tokens": total})
    meter.done()


def pack(recipe: Recipe, out: StageOutput) -> dict:
    """Stage function: plan the token targets, run the pack tasks on the executor, publish `out`."""
    work = recipe.layout.pack_work
    tasks = pass_tasks(recipe)
    steps = [
        TaskStep(
            "tokenize",
            tasks,
            functools.partial(pack_task, recipe, work),
            lambda rank: is_done(work / "tasks" / f"t{rank:05d}"),
        )
    ]
    if prepare_work(work, out.fingerprint) or not (work / PLAN).exists():
        tok = load_tokenizer(recipe.layout.tokenizer)
        encoder_name = choose_encoder(tok, recipe.layout.mix, recipe.tokenizer.encoder)
        plan = plan_tokens(recipe, DocumentEncoder(recipe.layout.tokenizer, encoder_name == "tiktoken"))
        plan["encoder"] = encoder_name
        (work / PLAN).write_text(json.dumps(plan, indent=1))
    publish = functools.partial(publish_tokens, recipe, work, out)
    if recipe.data.executor.type == "slurm":
        submit_slurm(recipe, work, "pack", steps, publish)
    run_steps(recipe, work, "pack", steps)
    return publish()


def publish_tokens(recipe: Recipe, work: Path, out: StageOutput) -> dict:
    begin_publish(work)
    summary = out.publish(lambda tmp: assemble_tokens(recipe, work, tmp))
    shutil.rmtree(work, ignore_errors=True)
    return summary


def assemble_tokens(recipe: Recipe, work: Path, out: Path) -> dict:
    """Move the tasks' shards into `out` and write the manifest from their statistics."""
    plan = json.loads((work / PLAN).read_text())
    tasks = sorted((work / "tasks").iterdir())
    files: dict[int, dict] = {}
    folder_of: dict[int, Path] = {}
    for task in tasks:
        if ".tmp-" in task.name:
            continue
        for entry in read_stats(task)["files"]:
            files[entry["file"]] = entry
            folder_of[entry["file"]] = task
            for split in ("train", "val"):
                for shard in entry[split]["shards"]:
                    for name in (shard["file"], shard["index"], shard.get("ids")):
                        if name is None:
                            continue
                        (out / name).parent.mkdir(parents=True, exist_ok=True)
                        os.replace(task / name, out / name)
    with open(out / "val_docs.jsonl", "wb") as val_docs:  # the val split's text only: a small fraction
        for name in plan["sources"]:
            for i in sorted(k for k, e in files.items() if e["source"] == name):
                with open(folder_of[i] / _val_docs_name(i), "rb") as fh:
                    shutil.copyfileobj(fh, val_docs)
    tok_dir = recipe.layout.tokenizer
    tok = load_tokenizer(tok_dir)
    dtype = dtype_for(len(tok))
    per_source: dict[str, SourceTokens] = {
        name: SourceTokens(shards={"train": [], "val": []}) for name in plan["sources"]
    }
    split_shards: dict[str, list[TokenShard]] = {"train": [], "val": []}
    split_bytes = {"train": 0, "val": 0}
    for name in plan["sources"]:  # source by source, each in mix-file order: independent of the task count
        src = per_source[name]
        for i in sorted(k for k, e in files.items() if e["source"] == name):
            entry = files[i]
            for split in ("train", "val"):
                shards = [TokenShard(**s) for s in entry[split]["shards"]]
                src.shards[split] += shards
                split_shards[split] += shards
                split_bytes[split] += entry[split]["bytes"] or 0
                src.docs += entry[split]["docs"]
                src.bytes += entry[split]["bytes"] or 0
                if split == "train":
                    src.train_tokens += entry[split]["tokens"]
                else:
                    src.val_tokens += entry[split]["tokens"]
                    src.val_bytes = (src.val_bytes or 0) + (entry[split]["bytes"] or 0)
    splits = {
        s: TokenSplit(
            shards=split_shards[s],
            tokens=sum(x.tokens for x in split_shards[s]),
            docs=sum(x.docs for x in split_shards[s]),
            bytes=split_bytes[s],
        )
        for s in ("train", "val")
    }
    if splits["train"].tokens == 0 or splits["val"].tokens == 0:
        raise DataError(
            f"{recipe.layout.mix}: the {'train' if not splits['train'].tokens else 'val'} split is empty; "
            "add data or change data.val_fraction"
        )
    no_val = [name for name, s in per_source.items() if not s.val_tokens]
    if no_val:
        log.warning(
            "source(s) %s got no val documents (one document, or too few for data.val_fraction=%s): their "
            "own val bits/byte cannot be measured; add documents or raise data.val_fraction",
            ", ".join(no_val),
            recipe.data.val_fraction,
        )
    total = sum(s.train_tokens + s.val_tokens for s in per_source.values())
    for name, s in per_source.items():
        p = plan["sources"][name]
        tokens = s.train_tokens + s.val_tokens
        s.token_share = round(tokens / total, 4)
        s.bytes_per_token = round(s.bytes / max(tokens, 1), 3)
        s.requested_share = round(p["share"], 4)
        s.target_tokens = p["target_tokens"]
        s.epochs = round(tokens / max(p["available_tokens"], 1), 3)
        s.capped = p["capped"]
    TokenManifest(
        dtype=dtype.name,
        vocab_size=len(tok),
        eos_id=tok.eos_token_id,
        bos_id=tok.bos_token_id,
        splits=splits,
        tokenizer_hash=tokenizer_hash(tok_dir),
        encoder=plan["encoder"],
        seed=recipe.seed,
        val_fraction=recipe.data.val_fraction,
        sources=per_source,
    ).write(out)
    return {
        "train_tokens": splits["train"].tokens,
        "val_tokens": splits["val"].tokens,
        "dtype": dtype.name,
        "token_shares": {n: s.token_share for n, s in per_source.items()},
    }
