"""`pretrain pack RECIPE`: mix the clean documents by token share and tokenize them into per-source shards.

    pretrain pack recipes/tiny/config.yaml               # -> <output_dir>/tokens/

Layout of `tokens/`:
    manifest.json                           dtype, vocab/eos/bos ids, tokenizer hash, per split shard list,
                                            per source counts, shares and shards (the format: manifest.py)
    <source>/{train,val}-FFFFF-NNN.bin      raw little-endian uint16 (vocab <= 65,535) or uint32 token ids
                                            of mix file FFFFF of that source
    <source>/{train,val}-FFFFF-NNN.idx.npy  int64 start offset of every document inside its shard
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
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pretrain.config import Recipe
from pretrain.core.atomic import atomic_dir
from pretrain.core.errors import DataError, RecipeError
from pretrain.core.markers import StageOutput
from pretrain.core.progress import get_logger
from pretrain.data.executor import TaskStep, begin_publish, pass_tasks, prepare_work, run_steps, submit_slurm
from pretrain.data.mixio import iter_documents, read_at, read_manifest, shard_offsets
from pretrain.data.records import is_done, progress_file, read_stats, write_stats
from pretrain.data.taskprogress import TaskProgress
from pretrain.tokens.fast_encode import FastEncoder, tiktoken_encoding
from pretrain.tokens.manifest import SourceTokens, TokenManifest, TokenShard, TokenSplit
from pretrain.tokens.tokenizer import load_tokenizer, tokenizer_hash

log = get_logger("pretrain.pack")
SHARD_TOKENS = 1 << 27  # 128M tokens per shard: 256 MB as uint16
CHUNK_DOCS = 64  # documents encoded per batch
SAMPLE_CHECK_CHARS = 1 << 20  # the encoders must agree on this much of the mix before tiktoken is used
BPT_SAMPLE_BYTES = 1 << 18  # per source: text tokenized up front to estimate its bytes per token
PLAN = "plan.json"


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65_535 else np.dtype(np.uint32)


def is_val(doc_id: str, seed: int, fraction: float) -> bool:
    base = doc_id.split("#rep", 1)[0]
    h = int.from_bytes(hashlib.blake2b(f"{seed}:{base}".encode(), digest_size=8).digest(), "little")
    return h / 2**64 < fraction


class ShardWriter:
    """Append documents to numbered shards `<prefix>-NNNNN`, recording document offsets."""

    def __init__(self, out: Path, prefix: str, dtype: np.dtype):
        self.out, self.prefix, self.dtype = Path(out), prefix, dtype
        self.shards: list[TokenShard] = []
        self._fh, self._offsets, self._n = None, [], 0

    def add(self, ids) -> None:
        if self._fh is None or self._n >= SHARD_TOKENS:
            self._roll()
        self._offsets.append(self._n)
        self._fh.write(np.asarray(ids, dtype=self.dtype).tobytes())
        self._n += len(ids)

    def _roll(self) -> None:
        self._finish()
        name = f"{self.prefix}-{len(self.shards):05d}"
        self.shards.append(TokenShard(file=f"{name}.bin", index=f"{name}.idx.npy"))
        (self.out / name).parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.out / f"{name}.bin", "wb")
        self._offsets, self._n = [], 0

    def _finish(self) -> None:
        if self._fh is None:
            return
        self._fh.close()
        shard = self.shards[-1]
        np.save(self.out / shard.index, np.asarray(self._offsets, dtype=np.int64))
        shard.tokens, shard.docs = self._n, len(self._offsets)
        self._fh = None

    def close(self, text_bytes: int | None = None, empty_shard: bool = True) -> TokenSplit:
        """Finish the last shard (`empty_shard`: write one even when nothing was added); `text_bytes`: the
        split's UTF-8 size, for bits per byte."""
        if not self.shards and empty_shard:
            self._roll()
        self._finish()
        return TokenSplit(
            shards=self.shards,
            tokens=sum(s.tokens for s in self.shards),
            docs=sum(s.docs for s in self.shards),
            bytes=text_bytes,
        )


def write_packed(
    out_dir: Path,
    train_docs: Iterable[list[int]],
    val_docs: Iterable[list[int]],
    *,
    vocab_size: int,
    eos_id: int,
    bos_id: int | None = None,
    tokenizer_hash: str | None = None,
) -> TokenManifest:
    """Write token documents (each already ending in EOS) as a tokens folder; returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = dtype_for(vocab_size)
    splits = {}
    for split, docs in (("train", train_docs), ("val", val_docs)):
        writer = ShardWriter(out_dir, split, dtype)
        for ids in docs:
            writer.add(ids)
        splits[split] = writer.close()
    manifest = TokenManifest(
        dtype=dtype.name,
        vocab_size=vocab_size,
        eos_id=eos_id,
        bos_id=bos_id,
        splits=splits,
        tokenizer_hash=tokenizer_hash,
    )
    manifest.write(out_dir)
    return manifest


def _choose_encoder(tok, mix: Path, requested: str) -> str:
    """The encoder to pack with: "tiktoken" or "tokenizers" (the ids are the same; only the speed differs).

    `requested` is `tokenizer.encoder`: "auto" takes tiktoken when the tokenizer converts exactly and both
    encoders agree on a sample of the mix, else HF `tokenizers`; "tokenizers" forces HF (benches compare
    the two); "tiktoken" insists, and is a `RecipeError` when that check fails.
    """
    if requested == "tokenizers":
        return "tokenizers"
    backend = tok.backend_tokenizer
    encoding = tiktoken_encoding(backend)
    if encoding is None:
        if requested == "tiktoken":
            raise RecipeError(
                [
                    "tokenizer.encoder: tiktoken, but the tokenizer is not a plain byte-level BPE that "
                    "tiktoken reproduces (use auto or tokenizers)"
                ]
            )
        return "tokenizers"
    sample, size = [], 0
    for rec in iter_documents(mix):
        sample.append(rec["text"])
        size += len(rec["text"])
        if size >= SAMPLE_CHECK_CHARS:
            break
    if not FastEncoder(backend, encoding).agrees_with_backend(sample):
        if requested == "tiktoken":
            raise RecipeError(
                [
                    f"tokenizer.encoder: tiktoken, but tiktoken and tokenizers disagree on a sample of {mix} "
                    "(use auto or tokenizers)"
                ]
            )
        log.warning("tiktoken and tokenizers disagree on a sample of %s; packing with tokenizers", mix)
        return "tokenizers"
    return "tiktoken"


class DocumentEncoder:
    """Documents -> `[BOS] ids EOS` arrays in the shards' dtype (tiktoken or HF tokenizers)."""

    def __init__(self, tokenizer_dir: Path, use_tiktoken: bool):
        tok = load_tokenizer(Path(tokenizer_dir))
        self.dtype = dtype_for(len(tok))
        backend = tok.backend_tokenizer
        self.encoder = FastEncoder(backend, tiktoken_encoding(backend) if use_tiktoken else None)
        self.bos, self.eos = tok.bos_token_id, tok.eos_token_id
        self.add_bos = (
            bool(tok("a")["input_ids"][:1] == [tok.bos_token_id]) if tok.bos_token_id is not None else False
        )

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        out = []
        for e in self.encoder.encode_batch(texts):
            ids = np.empty(len(e) + 1 + int(self.add_bos), dtype=self.dtype)
            if self.add_bos:
                ids[0] = self.bos
            ids[int(self.add_bos) : -1] = e
            ids[-1] = self.eos
            out.append(ids)
        return out


def fingerprint_inputs(recipe: Recipe) -> dict:
    """The split seed and fraction and the mixture (weights in tokens, size, repeats)."""
    return {
        "seed": recipe.seed,
        "val_fraction": recipe.data.val_fraction,
        "mixture": recipe.data.mixture.model_dump(mode="json", exclude={"shard_docs"}),
        "weights": {s.name: [s.weight, s.max_epochs] for s in recipe.data.sources},
    }


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
        for shard in e["shards"]:
            plan["files"].append(
                {
                    "source": name,
                    "source_idx": idx,
                    "file": shard["file"],
                    "target_tokens": target * shard["bytes"] / max(e["bytes"], 1),
                }
            )
    return plan


def _file_seed(seed: int, file: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{file}".encode(), digest_size=8).digest(), "little")


def _sample_file(path: Path, target: float, seed: int, encoder: DocumentEncoder):
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
            for rec, ids, repeat in _sample_file(
                mix / f["file"], f["target_tokens"], _file_seed(seed, f["file"]), encoder
            ):
                doc_id = rec["id"] if repeat == 0 else f"{rec['id']}#rep{repeat}"
                split = "val" if is_val(doc_id, seed, fraction) else "train"
                writers[split].add(ids)
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
        encoder_name = _choose_encoder(tok, recipe.layout.mix, recipe.tokenizer.encoder)
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
                    for name in (shard["file"], shard["index"]):
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
