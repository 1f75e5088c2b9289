"""Recipe section `tokenizer`: a BPE trained on the mix, or a reused one optionally extended with new tokens."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pretrain.config.tokenizer import TokenizerConfig, TokenizerExtension


def test_the_default_trains_an_8k_bpe_with_bos_and_reserved_chat_tokens():
    cfg = TokenizerConfig()
    assert cfg.pretrained is None and cfg.vocab_size == 8192 and cfg.extend is None
    assert (cfg.bos_token, cfg.eos_token, cfg.pad_token) == ("<|bos|>", "<|endoftext|>", "<|pad|>")
    assert "<|im_start|>" in cfg.extra_special_tokens and "<|im_end|>" in cfg.extra_special_tokens
    assert cfg.add_bos is True and cfg.split_digits is True and cfg.encoder == "auto"


def test_each_config_gets_its_own_special_token_list():
    a, b = TokenizerConfig(), TokenizerConfig()
    a.extra_special_tokens.append("<|tool|>")
    assert "<|tool|>" not in b.extra_special_tokens


@pytest.mark.parametrize("vocab", [256, 1_048_576])
def test_vocab_sizes_from_bytes_to_a_million_are_allowed(vocab):
    assert TokenizerConfig(vocab_size=vocab).vocab_size == vocab


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("vocab_size", 255),
        ("vocab_size", 1_048_577),
        ("min_frequency", 0),
        ("sample_bytes", 0),
        ("encoder", "sp"),
    ],
)
def test_out_of_range_values_are_errors(key, value):
    with pytest.raises(ValidationError, match=key):
        TokenizerConfig(**{key: value})


def test_an_extension_is_read_from_a_mapping():
    cfg = TokenizerConfig(pretrained="gpt2", extend={"new_tokens": 64, "tokens": ["<tool>"]})
    assert isinstance(cfg.extend, TokenizerExtension)
    assert (cfg.extend.new_tokens, cfg.extend.tokens, cfg.extend.sample_bytes) == (64, ["<tool>"], 10_000_000)


def test_learnt_tokens_alone_or_listed_tokens_alone_are_an_extension():
    assert TokenizerExtension(new_tokens=64).tokens == []
    assert TokenizerExtension(tokens=["<tool>"]).new_tokens == 0


def test_an_extension_that_adds_nothing_is_an_error():
    with pytest.raises(ValidationError, match="adds nothing; set new_tokens > 0 or list tokens"):
        TokenizerExtension()


def test_an_empty_listed_token_is_an_error_naming_its_position():
    with pytest.raises(ValidationError, match=r"tokens\.1: an empty string is not a token"):
        TokenizerExtension(tokens=["<a>", ""])


def test_a_token_listed_twice_is_an_error_naming_the_second_listing():
    with pytest.raises(ValidationError, match=r"tokens\.2: '<a>' is listed twice"):
        TokenizerExtension(tokens=["<a>", "<b>", "<a>"])


def test_tokens_that_differ_only_in_case_are_different_tokens():
    assert TokenizerExtension(tokens=["<A>", "<a>"]).tokens == ["<A>", "<a>"]


@pytest.mark.parametrize(
    ("key", "value"), [("new_tokens", -1), ("new_tokens", 1_048_577), ("sample_bytes", 0)]
)
def test_extension_sizes_are_bounded(key, value):
    with pytest.raises(ValidationError, match=key):
        TokenizerExtension(tokens=["<a>"], **{key: value})
