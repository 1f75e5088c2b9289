"""The trained tokenizer: special tokens, BOS, lossless round trip on every builtin source, AutoTokenizer load."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from pretrain.data.builtin import BUILTIN
from pretrain.tokens.tokenizer import load_tokenizer, rounded_vocab

TRICKY = [
    "def f(x):\n\tif x:\n        return 'héllo wörld 🌍'  # ñ\r\n",
    "    \n\n\t\t  trailing   spaces   \n",
    "数字 12345678901234567890 and ½ ∑ ∞",
    "<|im_start|>user\nhi<|im_end|>",
]


@pytest.fixture(scope="module")
def tok(small_run):
    _, out = small_run
    return AutoTokenizer.from_pretrained(out / "tokenizer")


def test_special_tokens_and_bos(tok, small_run):
    recipe, _ = small_run
    assert tok.bos_token == "<|bos|>" and tok.eos_token == "<|endoftext|>" and tok.pad_token == "<|pad|>"
    for t in ("<|im_start|>", "<|im_end|>"):
        assert t in tok.all_special_tokens
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1
    ids = tok("hello")["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert len(tok) == rounded_vocab(recipe.tokenizer.vocab_size) == 512
    assert tok.model_max_length == recipe.train.seq_len


@pytest.mark.parametrize("corpus", sorted(BUILTIN))
def test_round_trip_builtin_sources(tok, corpus):
    docs = [text for _, (_, text) in zip(range(25), BUILTIN[corpus]())]
    assert docs
    for text in docs:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_tricky(tok, text):
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_digits_split_and_indentation_cheap(tok):
    assert len(tok("1234567890", add_special_tokens=False)["input_ids"]) == 10
    indented = tok("        return x", add_special_tokens=False)["input_ids"]
    assert len(indented) <= 5  # a run of spaces is not shattered into one token per space


def test_report(small_run):
    _, out = small_run
    report = json.loads((out / "tokenizer" / "tokenizer_report.json").read_text())
    assert set(report["sources"]) == {"stdlib_code", "stdlib_docs", "pydoc_topics"}
    for s in report["sources"].values():
        assert s["roundtrip_failures"] == 0 and s["bytes_per_token"] > 1.5


def test_reference_comparison(small_run, shared_data, tmp_path):
    from pretrain.tokens.report import load_reference

    ref = load_reference(shared_data / "gpt2_tokenizer")
    assert len(ref.encode("hello world").ids) == 2


def test_load_tokenizer_errors(tmp_path):
    from pretrain.core.errors import StageError

    with pytest.raises(StageError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
