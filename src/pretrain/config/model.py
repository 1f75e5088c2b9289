"""Recipe section `model`: any `AutoConfig` model_type plus its fields, and how to initialise it.

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

    model_type: str = Field(min_length=1)
    init_std: float = Field(0.02, gt=0)
    scaled_residual_init: bool = Field(
        True, description="std / sqrt(2 * num_layers) on residual output projections"
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flex_attention"] = "sdpa"
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False

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
