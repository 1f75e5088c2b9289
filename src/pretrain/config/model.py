"""Recipe section `model`: any `AutoConfig` model_type plus its fields, and how to initialise it.

With `init_from`, the architecture and weights come from the parent model; the keys of this section
must then agree with it (they describe the parent, so `pretrain plan` stays right).

Keys that are not ours are passed to `AutoConfig.for_model(model_type, **fields)` and must be
attributes of that config class (checked in `Recipe` validation, so a typo is an error, not a
silently ignored kwarg). `vocab_size` is never set here: it always comes from the tokenizer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from pretrain.config.base import Section


class ModelConfig(Section):
    # extra keys are the HF config fields; validated against the AutoConfig class in `validate_hf_fields`
    model_config = ConfigDict(extra="allow", strict=True)

    model_type: str = Field(
        min_length=1,
        description="any transformers model_type (llama, qwen2, gpt2, ...); the other keys of this "
        "section that are not listed here are that config's fields (hidden_size, num_hidden_layers, ...)",
    )
    init_std: float = Field(
        0.02,
        gt=0,
        description="standard deviation of the N(0, std) init of every Linear and Embedding weight "
        "(biases 0, norms 1; also the config's initializer_range); lower it for very wide models",
    )
    scaled_residual_init: bool = Field(
        True,
        description="init residual output projections (o_proj, down_proj) with std / sqrt(2 * num_layers), "
        "as GPT-2 / OLMo do, so deep models start stable",
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flex_attention"] = Field(
        "sdpa",
        description="attention kernel passed to transformers; flash_attention_2 needs the flash-attn "
        "package and falls back to sdpa without CUDA",
    )
    gradient_checkpointing: bool | Literal["selective"] = Field(
        False,
        description="activation checkpointing per transformer block: true recomputes each whole block in the "
        "backward pass (least activation memory, ~+33% compute); `selective` is torchtitan's op policy (keeps "
        "attention and every other matmul output, recomputes the rest: most of the saving for less compute); "
        "false keeps every activation. Losses are the same either way; turn on when a micro batch does not fit",
    )
    trust_remote_code: bool = Field(
        False, description="allow model code from the Hub for model types transformers does not ship"
    )
    init_from: str | None = Field(
        None,
        description="continued pretraining: start from this model instead of a random init — a Hub id or a "
        "folder (relative to the recipe), optionally `@revision`; its config and safetensors weights are "
        "loaded, and every architecture key this section sets must equal the parent's (else an error)",
    )

    @model_validator(mode="after")
    def _no_vocab(self) -> ModelConfig:
        if "vocab_size" in (self.model_extra or {}):
            raise ValueError(
                "vocab_size comes from the tokenizer; remove model.vocab_size (set tokenizer.vocab_size)"
            )
        return self

    @property
    def hf_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
