"""Recipe section `model`: our own keys, the transformers config's fields, and no vocab_size."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pretrain.config.model import ModelConfig


def test_keys_that_are_not_ours_are_the_transformers_config_fields():
    model = ModelConfig(model_type="llama", hidden_size=64, num_hidden_layers=2, tie_word_embeddings=True)
    assert model.hf_fields == {"hidden_size": 64, "num_hidden_layers": 2, "tie_word_embeddings": True}


def test_our_own_keys_are_not_passed_to_transformers():
    model = ModelConfig(model_type="llama", init_std=0.01, gradient_checkpointing=True, init_from="me/parent")
    assert model.hf_fields == {}
    assert (model.init_std, model.gradient_checkpointing, model.init_from) == (0.01, True, "me/parent")


def test_changing_the_returned_fields_does_not_change_the_section():
    model = ModelConfig(model_type="llama", hidden_size=64)
    model.hf_fields["hidden_size"] = 128
    assert model.hf_fields == {"hidden_size": 64}


def test_the_defaults_are_a_scaled_random_init_with_sdpa_attention():
    model = ModelConfig(model_type="llama")
    assert model.init_std == 0.02 and model.scaled_residual_init is True
    assert model.attn_implementation == "sdpa" and model.gradient_checkpointing is False
    assert model.trust_remote_code is False and model.init_from is None


def test_vocab_size_is_refused_because_it_comes_from_the_tokenizer():
    with pytest.raises(ValidationError, match="vocab_size comes from the tokenizer; remove model.vocab_size"):
        ModelConfig(model_type="llama", vocab_size=512)


def test_a_model_type_is_required_and_not_empty():
    with pytest.raises(ValidationError, match="model_type"):
        ModelConfig()
    with pytest.raises(ValidationError, match="model_type"):
        ModelConfig(model_type="")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("init_std", 0.0),
        ("init_std", -0.02),
        ("attn_implementation", "flash"),
        ("gradient_checkpointing", "yes"),
    ],
)
def test_our_keys_are_validated(key, value):
    with pytest.raises(ValidationError, match=key):
        ModelConfig(model_type="llama", **{key: value})
