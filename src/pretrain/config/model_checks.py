"""Model fields of a recipe checked against the transformers config class of `model.model_type`: each key must
be a field of that config (or a keyword it folds into one), of the field's type and sign, and a head_dim the
config would not derive from the recipe's sizes must be set.

Each check returns `file: model.key: problem (what to do)` lines; `validate_recipe` reports them with the rest.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pretrain.config import Recipe


def model_field_problems(recipe: Recipe, label: str) -> list[str]:
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    mt = recipe.model.model_type
    if mt not in CONFIG_MAPPING:
        close = sorted(k for k in CONFIG_MAPPING.keys() if k[:3] == mt[:3])[:5]
        hint = (
            f" (similar: {', '.join(close)})"
            if close
            else " (any transformers model_type, e.g. llama, qwen2, gpt2)"
        )
        return [f"{label}: model.model_type: unknown model type {mt!r}{hint}"]
    defaults = AutoConfig.for_model(mt)
    problems = []
    default_dict = defaults.to_dict()
    for key, value in recipe.model.hf_fields.items():
        if not hasattr(defaults, key) and not consumed_kwarg(mt, key, value, default_dict):
            problems.append(
                f"{label}: model.{key}: not a field of the {mt} config; remove it or check its spelling"
            )
            continue
        default = getattr(defaults, key, None)
        if isinstance(default, bool) and not isinstance(value, bool):
            problems.append(f"{label}: model.{key}: expected true or false, got {value!r}")
        elif (
            isinstance(default, int)
            and not isinstance(default, bool)
            and not (isinstance(value, int) and not isinstance(value, bool))
        ):
            if not (default is None or value is None):
                problems.append(f"{label}: model.{key}: expected an integer, got {value!r}")
        elif isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            problems.append(f"{label}: model.{key}: must not be negative, got {value!r}")
        elif value == 0 and _SIZE_KEY.search(key) and isinstance(default, int) and default > 0:
            problems.append(f"{label}: model.{key}: must be at least 1, got 0")
    problems += head_dim_problems(recipe, label, defaults)
    return problems


def head_dim_problems(recipe: Recipe, label: str, defaults: Any) -> list[str]:
    """Configs with a fixed default head_dim (qwen3: 128, gemma: 256) ignore hidden_size / num_attention_heads,
    so a small recipe would silently get q/k/v projections several times wider than its residual stream."""
    from transformers import AutoConfig

    fields = recipe.model.hf_fields
    hidden, heads = fields.get("hidden_size"), fields.get("num_attention_heads")
    if "head_dim" in fields or not hasattr(defaults, "head_dim") or not isinstance(hidden, int):
        return []
    if not isinstance(heads, int) or heads <= 0 or hidden % heads:
        return []
    try:  # llama derives head_dim from these two; qwen3 / gemma keep a fixed default
        default = AutoConfig.for_model(
            recipe.model.model_type, hidden_size=hidden, num_attention_heads=heads
        ).head_dim
    except Exception:  # other fields are reported by the checks above
        return []
    if not isinstance(default, int) or default == hidden // heads:
        return []
    return [
        f"{label}: model.head_dim: the {recipe.model.model_type} config defaults head_dim to {default}, not "
        f"hidden_size / num_attention_heads = {hidden // heads}; set model.head_dim ({hidden // heads} keeps "
        "the usual shape)"
    ]


_SIZE_KEY = re.compile(r"size|^num_|layers|heads|_dim$|positions")


def consumed_kwarg(model_type: str, key: str, value: Any, default_dict: dict) -> bool:
    """True for legacy kwargs a config folds into another field (e.g. rope_theta -> rope_parameters)."""
    from transformers import AutoConfig

    # a value equal to the folded field's default changes nothing (gpt_neox rotary_pct: 0.25), so also try
    # a different value of the same type
    probes = [value]
    if isinstance(value, bool):
        probes.append(not value)
    elif isinstance(value, int | float):
        probes.append(type(value)(value * 0.5 + 1) if value else type(value)(1))
    for probe in probes:
        try:
            changed = AutoConfig.for_model(model_type, **{key: probe}).to_dict()
        except Exception:  # a bad value for a real kwarg: let the type checks below report it
            return True
        nested = any(isinstance(v, dict) and key in v for v in changed.values())
        if nested or any(k != key and changed.get(k) != default_dict.get(k) for k in changed):
            return True
    return False
