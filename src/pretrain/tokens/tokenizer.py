"""`pretrain tokenizer RECIPE`: train a byte-level BPE on a weighted sample of the mix (or reuse one).

    pretrain tokenizer recipes/tiny/config.yaml          # -> <output_dir>/tokenizer/

Byte-level BPE (HF `tokenizers`): every byte is in the alphabet, so any text round-trips. Digits are
split one by one (numbers generalise better); the GPT-2 pre-tokenizer regex keeps runs of spaces
together, so code indentation costs one or two tokens per line. The BOS token is prepended by a
`TemplateProcessing` post-processor (`add_bos`); packing puts EOS after every document. The vocab
includes BOS/EOS/PAD and reserved chat tokens so post-training can add a chat template without
resizing the embeddings. The sample is drawn from the mix (each clean document once) at a rate per
source that follows the mixture weights.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from pretrain.config import Recipe
from pretrain.config.refs import parse_pretrained_ref
from pretrain.core.errors import DataError, RecipeError, StageError
from pretrain.core.layout import MANIFEST
from pretrain.core.markers import files_signature
from pretrain.core.progress import get_logger
from pretrain.data.mixio import iter_documents, read_manifest
from pretrain.hub.pull import TOKENIZER_FILES, fetch
from pretrain.tokens.extension import TokenizerExtensionRecord, extend_tokenizer, listed_token_problems
from pretrain.tokens.report import write_report

log = get_logger("pretrain.tokens.tokenizer")
HELDOUT_BYTES_PER_SOURCE = 300_000


def rounded_vocab(n: int) -> int:
    return (n + 63) // 64 * 64


def special_tokens(recipe: Recipe) -> list[str]:
    t = recipe.tokenizer
    return list(dict.fromkeys([t.bos_token, t.eos_token, t.pad_token, *t.extra_special_tokens]))


def _sample(recipe: Recipe, sample_bytes: int | None = None) -> tuple[list[str], dict[str, list[str]]]:
    """(training texts ~ `sample_bytes` (default tokenizer.sample_bytes), split over the sources by their
    weights; held-out texts per source, never in the training texts)."""
    mix = recipe.layout.mix
    sources = read_manifest(mix)["sources"]
    wanted = sample_bytes or recipe.tokenizer.sample_bytes
    # the mix holds each clean document once: sample each source at the rate that gives it its share
    rate = {name: min(1.0, e["share"] * wanted / max(e["bytes"], 1)) for name, e in sources.items()}
    rng = random.Random(recipe.seed)
    train, heldout, held_bytes = [], {}, {}
    for rec in iter_documents(mix):
        if rng.random() < rate[rec["source"]]:
            train.append(rec["text"])
        elif held_bytes.get(rec["source"], 0) < HELDOUT_BYTES_PER_SOURCE:
            heldout.setdefault(rec["source"], []).append(rec["text"])
            held_bytes[rec["source"]] = held_bytes.get(rec["source"], 0) + len(rec["text"])
    if not train:
        raise DataError(f"{mix}: the mix is empty; nothing to train a tokenizer on")
    return train, heldout


def new_tokenizer(recipe: Recipe) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    splitters = [pre_tokenizers.Digits(individual_digits=True)] if recipe.tokenizer.split_digits else []
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [*splitters, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def _post_process(tok: Tokenizer, recipe: Recipe) -> None:
    t = recipe.tokenizer
    if t.add_bos:
        bos = tok.token_to_id(t.bos_token)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{t.bos_token} $A",
            pair=f"{t.bos_token} $A {t.bos_token} $B",
            special_tokens=[(t.bos_token, bos)],
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)


def wrap(tok: Tokenizer, recipe: Recipe) -> PreTrainedTokenizerFast:
    t = recipe.tokenizer
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=t.bos_token,
        eos_token=t.eos_token,
        pad_token=t.pad_token,
        additional_special_tokens=[
            s for s in t.extra_special_tokens if s not in (t.bos_token, t.eos_token, t.pad_token)
        ],
        model_max_length=recipe.train.seq_len,
        clean_up_tokenization_spaces=False,
    )


def pretrained_spec(recipe: Recipe) -> tuple[str, str] | None:
    """(spec, recipe key) of the tokenizer to reuse: `tokenizer.pretrained`, else the parent model's own
    (`model.init_from`: its embeddings only make sense with its tokenizer); None = train one."""
    if recipe.tokenizer.pretrained:
        return recipe.tokenizer.pretrained, "tokenizer.pretrained"
    if recipe.model.init_from:
        return recipe.model.init_from, "model.init_from"
    return None


def reads_no_mix(recipe: Recipe) -> bool:
    """A reused tokenizer without an extension is copied as it is: the tokenizer stage needs no mix."""
    return pretrained_spec(recipe) is not None and recipe.tokenizer.extend is None


def fingerprint_inputs(recipe: Recipe) -> dict:
    """The tokenizer section, the sequence length (model_max_length) and a reused tokenizer's files (or Hub id)."""
    # the packing encoder changes speed, not the tokenizer or the token ids (tested)
    tokenizer = recipe.tokenizer.model_dump(mode="json", exclude={"encoder"})
    inputs = {"tokenizer": tokenizer, "model_max_length": recipe.train.seq_len}
    reused = pretrained_spec(recipe)
    if reused:
        local = recipe.resolve_path(reused[0])
        inputs["files"] = files_signature([str(local / "*")]) if local.is_dir() else reused[0]
    return inputs


def fetch_pretrained(recipe: Recipe, spec: str, key: str) -> Path:
    """The local folder of a tokenizer to reuse: a folder, or a Hub id[@revision] downloaded (tokenizer files only)."""
    return fetch(parse_pretrained_ref(spec, recipe.resolve_path, key), TOKENIZER_FILES, key)


def build_tokenizer(recipe: Recipe, out: Path) -> dict:
    """Stage function: train (or copy) the tokenizer into `out` and write its report."""
    reused = pretrained_spec(recipe)
    parent, extension = None, None
    if reused and recipe.tokenizer.extend:
        parent = load_tokenizer(fetch_pretrained(recipe, *reused))
        hf, extension, heldout = _extended(recipe, parent, reused[0])
        hf.model_max_length = recipe.train.seq_len
        save_tokenizer(hf, out)
        extension.save(out)
    elif reused:
        hf = load_tokenizer(fetch_pretrained(recipe, *reused))
        hf.model_max_length = recipe.train.seq_len
        hf.save_pretrained(out)
        heldout = _sample(recipe)[1] if (recipe.layout.mix / MANIFEST).exists() else {}
    else:
        texts, heldout = _sample(recipe)
        vocab = rounded_vocab(recipe.tokenizer.vocab_size)
        tok = new_tokenizer(recipe)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab,
            min_frequency=recipe.tokenizer.min_frequency,
            special_tokens=special_tokens(recipe),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        log.info(
            "training a %d-token BPE on %d documents (%.1f MB)", vocab, len(texts), sum(map(len, texts)) / 1e6
        )
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
        _post_process(tok, recipe)
        hf = wrap(tok, recipe)
        hf.save_pretrained(out)
    report = write_report(
        out, load_tokenizer(out), heldout, recipe, parent, extension.summary() if extension else None
    )
    if extension:
        _log_extension(report)
    return {"vocab_size": len(hf), "bytes_per_token": report["overall_bytes_per_token"]}


def _extended(
    recipe: Recipe, parent: PreTrainedTokenizerFast, spec: str
) -> tuple[PreTrainedTokenizerFast, TokenizerExtensionRecord, dict[str, list[str]]]:
    """`tokenizer.extend`: the parent extended with tokens learnt on a sample of the mix (and the listed ones);
    listed tokens that collide are errors before the mix is read."""
    ext = recipe.tokenizer.extend
    _raise_collisions(parent, recipe, spec)
    if not (recipe.layout.mix / MANIFEST).exists():
        raise StageError(
            f"{recipe.layout.mix}: no mix; tokenizer.extend learns on it: run `pretrain curate` first"
        )
    texts, heldout = _sample(recipe, ext.sample_bytes)
    log.info(
        "extending %s (%d ids): learning %d tokens on %d documents (%.1f MB) of the mix",
        spec, len(parent), ext.new_tokens, len(texts), sum(map(len, texts)) / 1e6,
    )  # fmt: skip
    hf, record = extend_tokenizer(parent, texts, ext, recipe.tokenizer.min_frequency, spec)
    if record.count("learnt") < ext.new_tokens:
        log.warning(
            "tokenizer.extend.new_tokens: only %d of %d tokens occur at least tokenizer.min_frequency=%d times "
            "in the sample; raise tokenizer.extend.sample_bytes for more",
            record.count("learnt"), ext.new_tokens, recipe.tokenizer.min_frequency,
        )  # fmt: skip
    return hf, record, heldout


def check_extension(recipe: Recipe) -> None:
    """`tokenizer.extend.tokens` that the parent tokenizer already has are errors before any
    stage works (`pretrain run` calls this before curation); fetches the parent's tokenizer files only."""
    reused = pretrained_spec(recipe)
    if recipe.tokenizer.extend and recipe.tokenizer.extend.tokens and reused:
        _raise_collisions(load_tokenizer(fetch_pretrained(recipe, *reused)), recipe, reused[0])


def _raise_collisions(parent: PreTrainedTokenizerFast, recipe: Recipe, spec: str) -> None:
    problems = listed_token_problems(parent, recipe.tokenizer.extend.tokens, spec)
    if problems:
        raise RecipeError([f"{recipe.source_label}: {problem}" for problem in problems])


def _log_extension(report: dict) -> None:
    ext, after, before = (
        report["extension"],
        report["overall_bytes_per_token"],
        report["parent_bytes_per_token"],
    )
    if not before:
        log.warning(
            "tokenizer.extend: no held-out text (the sample took the whole mix), so the compression gain is not "
            "measured; lower tokenizer.extend.sample_bytes"
        )
        return
    fewer = 1 - before / after
    log.info(
        "extended tokenizer: %d ids + %d new (%d learnt on the mix, %d listed); held-out bytes/token %.3f -> %.3f "
        "(%.1f%% fewer tokens than the parent)",
        ext["parent_vocab_size"], ext["added_tokens"], ext["learnt"], ext["listed"], before, after, 100 * fewer,
    )  # fmt: skip
    if after <= before:
        log.warning(
            "tokenizer.extend: the extended tokenizer does not encode the held-out mix in fewer tokens than the "
            "parent; the new tokens are not worth their embedding rows (raise sample_bytes or drop the extension)"
        )


def load_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    """Load a saved fast tokenizer; clear errors when the folder is missing or not a tokenizer."""
    path = Path(path)
    if not (path / "tokenizer.json").exists():
        raise StageError(
            f"{path}: no tokenizer.json (run `pretrain tokenizer RECIPE`, or point at a tokenizer folder)"
        )
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except Exception as exc:  # transformers raises many kinds of errors for a corrupt folder
        raise StageError(f"{path}: cannot load tokenizer ({type(exc).__name__}: {exc})") from None
    if tok.eos_token_id is None:
        raise StageError(f"{path}: tokenizer has no eos_token; packing needs one between documents")
    return tok


# options of the call that loaded a tokenizer, which transformers writes back into tokenizer_config.json
LOAD_TIME_KEYS = ("is_local", "local_files_only")


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: Path) -> None:
    """`save_pretrained` without the options of the call that loaded the tokenizer: a downloaded model's
    tokenizer_config.json must not claim to be local."""
    tokenizer.save_pretrained(folder)
    config_file = Path(folder) / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if any(key in config for key in LOAD_TIME_KEYS):
        for key in LOAD_TIME_KEYS:
            config.pop(key, None)
        config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def tokenizer_hash(path: Path) -> str:
    """Hash of tokenizer.json: packed shards remember it, so shards from another tokenizer are caught."""
    return hashlib.sha256((Path(path) / "tokenizer.json").read_bytes()).hexdigest()[:16]
