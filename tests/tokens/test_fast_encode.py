"""tiktoken as the packing encoder: the same ids as HF `tokenizers` for our trained tokenizers and GPT-2's,
exactly the same packed bytes, a fallback for tokenizers it cannot reproduce, and `tokenizer.encoder`."""

from __future__ import annotations

import itertools
import json
import shutil
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from pretrain.commands.run import run_stage
from pretrain.config import Recipe
from pretrain.core.errors import RecipeError
from pretrain.data.builtin import BUILTIN
from pretrain.data.mixio import MixWriter, write_manifest
from pretrain.testing import MINIMAL_MODEL, MINIMAL_TRAIN
from pretrain.tokens.encoder import choose_encoder
from pretrain.tokens.fast_encode import FastEncoder, tiktoken_encoding
from pretrain.tokens.manifest import TokenManifest
from pretrain.tokens.tokenizer import fingerprint_inputs, load_tokenizer

# digits next to spaces, tabs, runs of whitespace, contractions, unicode letters/numbers, emoji, CRLF, code
EDGES = [
    "a  1 22   333\t4\n 5x6 7.8e9 -1,000,000 $12 #3",
    "  \n\n\t\t  trailing   spaces   \n",
    "I'm you're it's we'll they've she'd DON'T 'quoted' '",
    "数字 12345678901234567890 and ½ ∑ ∞ ٣ Ⅻ ¾ x² 🌍 👍🏽 é é",
    "def f(x):\n\tif x:\n        return 'héllo wörld'  # ñ\r\n    \r\n",
    "   1\n  22\n\t333 \n",
    "",
]


def _ids(backend: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]


def test_same_ids_as_our_trained_tokenizer_on_every_builtin_source(small_run):
    _, out = small_run
    backend = load_tokenizer(out / "tokenizer").backend_tokenizer
    assert (
        json.loads(backend.to_str())["pre_tokenizer"]["type"] == "Sequence"
    )  # digits split, then byte level
    encoding = tiktoken_encoding(backend)
    assert encoding is not None
    fast = FastEncoder(backend, encoding)
    for corpus in BUILTIN:
        texts = [text for _, text in itertools.islice(BUILTIN[corpus](), 400)]
        assert fast.encode_batch(texts) == _ids(backend, texts), corpus
    assert fast.encode_batch(EDGES) == _ids(backend, EDGES)


def test_added_token_text_goes_through_hf(small_run):
    _, out = small_run
    backend = load_tokenizer(out / "tokenizer").backend_tokenizer
    fast = FastEncoder(backend, tiktoken_encoding(backend))
    texts = ["plain text", "a literal <|endoftext|> inside", "<|im_start|>user\nhi<|im_end|>"]
    assert fast.encode_batch(texts) == _ids(backend, texts)


@pytest.mark.shared
def test_same_ids_as_gpt2_on_real_corpora(shared_data, tmp_path):
    files = shared_data / "gpt2_tokenizer"
    gpt2 = Tokenizer(models.BPE.from_file(str(files / "gpt2_vocab.json"), str(files / "gpt2_merges.txt")))
    gpt2.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert gpt2.get_vocab_size() == 50257
    encoding = tiktoken_encoding(gpt2)
    assert encoding is not None
    texts = EDGES + [
        p.read_text(encoding="utf-8", errors="replace")[:200_000] for p in _some_files(shared_data)
    ]
    assert FastEncoder(gpt2, encoding).encode_batch(texts) == _ids(gpt2, texts)


def _some_files(shared_data):
    files = sorted(
        p for p in shared_data.rglob("*") if p.suffix in (".txt", ".jsonl") and p.stat().st_size > 10_000
    )
    return files[:12]


def test_packed_bytes_identical_with_either_encoder(small_run, make_small_recipe, tmp_path):
    _, out = small_run
    assert TokenManifest.read(out / "tokens").encoder == "tiktoken"
    run = tmp_path / "run"
    run.mkdir()
    for stage in ("mix", "tokenizer"):
        shutil.copytree(out / stage, run / stage)
    run_stage(make_small_recipe(run, "tokenizer.encoder=tokenizers"), "pack")
    slow = run / "tokens"
    assert TokenManifest.read(slow).encoder == "tokenizers"
    files = sorted((out / "tokens").rglob("*.bin")) + sorted((out / "tokens").rglob("*.npy"))
    assert files
    for f in files:
        rel = f.relative_to(out / "tokens")
        assert f.read_bytes() == (slow / rel).read_bytes(), rel


def test_unconvertible_tokenizers_fall_back(small_run):
    _, out = small_run
    spec = json.loads(load_tokenizer(out / "tokenizer").backend_tokenizer.to_str())
    assert tiktoken_encoding(Tokenizer.from_str(json.dumps(spec))) is not None

    def variant(**changes) -> Tokenizer:
        changed = json.loads(json.dumps(spec))
        for path, value in changes.items():
            section, key = path.split("__")
            changed[section][key] = value
        return Tokenizer.from_str(json.dumps(changed))

    assert tiktoken_encoding(variant(model__dropout=0.1)) is None
    assert tiktoken_encoding(variant(model__byte_fallback=True)) is None
    merges = list(spec["model"]["merges"])
    merges[10], merges[20] = merges[20], merges[10]  # priority no longer follows the ids
    assert tiktoken_encoding(variant(model__merges=merges)) is None
    lowercased = Tokenizer.from_str(json.dumps(spec))
    lowercased.normalizer = normalizers.Lowercase()
    assert tiktoken_encoding(lowercased) is None
    other_split = Tokenizer.from_str(json.dumps(spec))
    other_split.pre_tokenizer = pre_tokenizers.Whitespace()
    assert tiktoken_encoding(other_split) is None


def _byte_level_bpe(normalizer=None) -> SimpleNamespace:
    """A small byte-level BPE as `choose_encoder` sees a loaded tokenizer (its backend is all it reads)."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    backend.train_from_iterator(EDGES * 20, trainer)
    if normalizer is not None:
        backend.normalizer = normalizer
    return SimpleNamespace(backend_tokenizer=backend)


def _mix(folder) -> object:
    folder.mkdir()
    writer = MixWriter(folder, "s", 0)
    for i, text in enumerate(EDGES):
        writer.write({"key": i, "id": f"d{i}", "source": "s", "text": text})
    shards = writer.close()
    write_manifest(
        folder, {"s": {"weight": 1, "share": 1.0, "docs": len(EDGES), "bytes": 1, "shards": shards}}, 0
    )
    return folder


def test_encoder_setting_chooses_or_insists(tmp_path):
    mix, convertible, unconvertible = (
        _mix(tmp_path / "mix"),
        _byte_level_bpe(),
        _byte_level_bpe(normalizers.NFKC()),
    )
    assert choose_encoder(convertible, mix, "auto") == "tiktoken"
    assert choose_encoder(convertible, mix, "tiktoken") == "tiktoken"
    assert choose_encoder(convertible, tmp_path / "no-mix", "tokenizers") == "tokenizers"  # reads nothing
    assert choose_encoder(unconvertible, mix, "auto") == "tokenizers"
    with pytest.raises(RecipeError, match="tokenizer.encoder: tiktoken, but the tokenizer is not"):
        choose_encoder(unconvertible, mix, "tiktoken")


def test_encoders_disagreeing_on_the_mix(tmp_path, monkeypatch):
    monkeypatch.setattr(FastEncoder, "agrees_with_backend", lambda self, texts: False)
    mix, convertible = _mix(tmp_path / "mix"), _byte_level_bpe()
    assert choose_encoder(convertible, mix, "auto") == "tokenizers"
    with pytest.raises(
        RecipeError, match="tokenizer.encoder: tiktoken, but tiktoken and tokenizers disagree"
    ):
        choose_encoder(convertible, mix, "tiktoken")


def test_encoder_setting_changes_no_fingerprint():
    raw = {
        "name": "enc",
        "data": {"sources": [{"name": "s", "type": "builtin", "corpus": "python_stdlib_docs", "weight": 1}]},
        "model": MINIMAL_MODEL,
        "train": MINIMAL_TRAIN,
    }
    auto = Recipe.model_validate(raw)
    forced = Recipe.model_validate({**raw, "tokenizer": {"encoder": "tokenizers"}})
    assert forced.tokenizer.encoder == "tokenizers" and auto.tokenizer.encoder == "auto"
    assert fingerprint_inputs(auto) == fingerprint_inputs(forced)
    assert "encoder" not in fingerprint_inputs(auto)["tokenizer"]


PIECES = [*"ab Z9 0\t\n\r'’.-_$é数½٣🌍", "'s", "'ll", "  ", "\n\n", "123", " 4"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
def test_regex_equivalence_fuzzed(small_run, text):
    """Random mixes of digits, whitespace runs, apostrophes and unicode: tiktoken's pattern splits like HF's."""
    _, out = small_run
    backend = load_tokenizer(out / "tokenizer").backend_tokenizer
    assert FastEncoder(backend, _encoding(backend)).encode_batch([text]) == _ids(backend, [text])


_CACHE: dict = {}


def _encoding(backend):
    key = backend.to_str()
    if key not in _CACHE:
        _CACHE[key] = tiktoken_encoding(backend)
    return _CACHE[key]
