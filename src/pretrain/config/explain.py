"""`pretrain explain KEY`: the type, default and description of a recipe key, read from the schema.

    pretrain explain train.optimizer.lr
    pretrain explain data.sources[].weight            # or data.sources.0.weight
    pretrain explain train.schedule                   # a section lists its keys
    pretrain explain model.hidden_size --recipe recipes/tiny/config.yaml   # also that recipe's value

This module owns the command's text: types, bounds, defaults, a section's keys and a loaded recipe's
values. Walking the schema (key syntax, resolving a key to its fields, unknown-key errors) lives in
`pretrain.config.keys`. `model.<key>` that the schema does not define is a field of the transformers
config of `model.model_type` and is explained from that config class.
"""

from __future__ import annotations

import difflib
import json
import textwrap
from typing import Any, Literal, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pretrain.config import ModelConfig, Recipe
from pretrain.config.keys import (
    ITEM,
    KeyField,
    _is_section,
    _item_sections,
    _sections,
    _unwrap,
    _variant,
    all_keys,
    join_key,
    resolve,
    split_key,
)
from pretrain.config.model_checks import consumed_kwarg
from pretrain.core.errors import PretrainError

# key-walking names that callers (tests) import from here, re-exported from pretrain.config.keys
__all__ = ["all_keys", "explain", "resolve", "split_key"]

_WRAP = 100


def type_name(annotation: Any) -> str:
    """A reader's name for a field type: `float`, `integer | null`, `list of "norm" | "bias"`, `section`."""
    names: list[str] = []
    for member in _unwrap(annotation):
        origin = get_origin(member)
        if member is type(None):
            name = "null"
        elif origin is Literal:
            name = " | ".join(json.dumps(v) for v in get_args(member))
        elif origin is list:
            name = f"list of {type_name(get_args(member)[0])}"
        elif origin is dict:
            key_type, value_type = get_args(member)
            name = f"mapping of {type_name(key_type)} to {type_name(value_type)}"
        elif _is_section(member):
            name = "section"
        else:
            name = {str: "string", int: "integer", bool: "true/false", float: "number"}.get(
                member, getattr(member, "__name__", str(member))
            )
        if name not in names:
            names.append(name)
    return " | ".join(names)


_BOUNDS = (
    (annotated_types.Gt, "gt", "> {}"),
    (annotated_types.Ge, "ge", ">= {}"),
    (annotated_types.Lt, "lt", "< {}"),
    (annotated_types.Le, "le", "<= {}"),
    (annotated_types.MinLen, "min_length", "length >= {}"),
    (annotated_types.MaxLen, "max_length", "length <= {}"),
)


def constraints(info: FieldInfo) -> str:
    """The field's bounds as text, e.g. `> 0, <= 1` (empty when unconstrained)."""
    out = []
    for item in info.metadata:
        for kind, attr, text in _BOUNDS:
            if isinstance(item, kind):
                out.append(text.format(getattr(item, attr)))
        pattern = getattr(item, "pattern", None)
        if isinstance(pattern, str):
            out.append(f"matches {pattern}")
    return ", ".join(out)


def render_value(value: Any) -> str:
    """A value as it is written in YAML/JSON (`null`, `true`, `[0.9, 0.95]`, `wsd`)."""
    if isinstance(value, BaseModel):
        return json.dumps(value.model_dump(mode="json"))
    if isinstance(value, str):
        return (
            value
            if value and value.strip() == value and value[0] not in "[{&*!|>'\"%@`#"
            else json.dumps(value)
        )
    return json.dumps(value, default=str)


def _yaml_lines(value: Any, indent: str) -> list[str]:
    """A section (or list of sections) of a loaded recipe as indented YAML lines."""
    plain = (
        [v.model_dump(mode="json") for v in value]
        if isinstance(value, list)
        else value.model_dump(mode="json")
    )
    text = yaml.safe_dump(plain, sort_keys=False, default_flow_style=False, width=_WRAP)
    return [indent + line for line in text.splitlines()]


def default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "its keys' defaults"
    return render_value(value)


def recipe_values(recipe: Recipe, parts: list[str]) -> list[tuple[str, Any]]:
    """(dotted key, value) pairs the key selects in a loaded recipe; `[]` fans out over the list."""
    found: list[tuple[list[str], Any]] = [([], recipe)]
    for part in parts:
        step: list[tuple[list[str], Any]] = []
        for path, node in found:
            if part == ITEM and isinstance(node, list):
                step += [([*path, str(i)], item) for i, item in enumerate(node)]
            elif part.isdigit() and isinstance(node, list):
                if int(part) < len(node):
                    step.append(([*path, part], node[int(part)]))
            elif isinstance(node, BaseModel) and (
                part in type(node).model_fields or part in (node.model_extra or {})
            ):
                step.append(([*path, part], getattr(node, part)))
        found = step
    return [(join_key(path), value) for path, value in found]


def _field_block(key: str, fields: list[KeyField]) -> list[str]:
    """Type, bounds, default and description; one block per union member where the members differ."""
    first = fields[0]
    lines = [key]
    by_variant = len(
        {(f.info.description, type_name(f.info.annotation), default_text(f.info)) for f in fields}
    )
    for f in fields if by_variant > 1 else [first]:
        indent = "  "
        if by_variant > 1 or len(fields) < f.members:
            lines.append(f"  [{f.variant}]")
            indent = "    "
        lines.append(f"{indent}type:     {type_name(f.info.annotation)}")
        if bounds := constraints(f.info):
            lines.append(f"{indent}allowed:  {bounds}")
        lines.append(f"{indent}default:  {default_text(f.info)}")
        lines += _wrapped(f.info.description or "(no description)", indent)
    return lines


def _wrapped(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, width=_WRAP, initial_indent=indent, subsequent_indent=indent)


def _section_lines(key: str, sections: list[type[BaseModel]], recipe: Recipe | None) -> list[str]:
    """The keys of a section (or of a union of sections), one block each."""
    lines = ["", f"keys of {key}:"]
    seen: dict[str, list[str]] = {}
    for section in sections:
        for name in section.model_fields:
            variant = _variant(section, sections)
            seen.setdefault(name, []).append(variant or "")
    for name, variants in seen.items():
        field = resolve(f"{key}.{name}")[0] if key else resolve(name)[0]
        only = f"  (only {', '.join(variants)})" if len(variants) < len(sections) and variants[0] else ""
        lines.append(f"  {name}: {type_name(field.info.annotation)} = {default_text(field.info)}{only}")
        lines += _wrapped(field.info.description or "(no description)", "      ")
    if recipe is not None and ModelConfig in sections:
        extra = recipe.model.hf_fields
        if extra:
            lines.append(f"  other keys (fields of the transformers {recipe.model.model_type} config):")
            lines += _wrapped(", ".join(f"{k}={render_value(v)}" for k, v in extra.items()), "      ")
    elif ModelConfig in sections:
        lines.append("  any other key: a field of the transformers config of model_type (e.g. hidden_size)")
    return lines


def _hf_field_lines(key: str, name: str, recipe: Recipe | None) -> list[str]:
    """`model.<name>` outside the schema: a field of the transformers config class of model.model_type."""
    from transformers import AutoConfig  # heavy; only for keys outside the schema

    model_type = recipe.model.model_type if recipe is not None else "llama"
    defaults = AutoConfig.for_model(model_type)
    where = type(defaults).__name__
    # legacy kwargs a config folds into a nested field (rope_theta -> rope_parameters) are still valid keys
    nested = {k: v for k, v in defaults.to_dict().items() if isinstance(v, dict) and name in v}
    value = recipe.model.hf_fields.get(name) if recipe is not None else None
    if hasattr(defaults, name):
        default = getattr(defaults, name)
    elif nested:
        parent, values = next(iter(nested.items()))
        default, where = values[name], f"{where}.{parent}"
    elif value is not None and consumed_kwarg(model_type, name, value, defaults.to_dict()):
        # a keyword the config reads without declaring it (qwen3_moe's head_dim): validate accepts it too
        default, where = None, f"{where}, a keyword it reads but does not declare"
    else:
        known = [*ModelConfig.model_fields, *defaults.to_dict()]
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join('model.' + c for c in close)}?" if close else ""
        raise PretrainError(
            f"explain: unknown recipe key {key!r}: neither a model key of the schema nor a field of the "
            f"transformers {model_type} config{hint}"
        )
    return [
        key,
        f"  type:     {type_name(type(default)) if default is not None else 'any'}",
        f"  default:  {render_value(default)} (transformers {where})",
        *_wrapped(
            f"a field of the transformers config of model_type {model_type!r}, passed to "
            f"AutoConfig.for_model; see that config class's documentation for its meaning"
            + ("" if recipe is not None else " (give --recipe to explain another model_type)"),
            "  ",
        ),
    ]


def explain(key: str, recipe: Recipe | None = None) -> str:
    """The text `pretrain explain KEY` prints: type, allowed values, default, description (+ recipe value)."""
    parts = split_key(key)
    if not parts:
        lines = ["the recipe: one YAML file with these sections"]
        lines += _section_lines("", [Recipe], recipe)[2:]
        return "\n".join(lines)
    canonical = join_key(parts)
    if len(parts) == 2 and parts[0] == "model" and parts[1] not in ModelConfig.model_fields:
        lines = _hf_field_lines(canonical, parts[1], recipe)
    else:
        # `data.sources[]` (or `.0`) names an item of a list: explained as the list and its items' keys
        item = len(parts) > 1 and (parts[-1] == ITEM or parts[-1].isdigit())
        list_key = join_key(parts[:-1]) if item else canonical
        fields = resolve(list_key)
        if item and not _item_sections(fields[0].info.annotation):
            fields = resolve(canonical)  # not a list of sections: resolve's error says so
        lines = _field_block(list_key, fields)
        annotation = fields[0].info.annotation
        subsections = _sections(annotation) or _item_sections(annotation)
        if subsections:
            sub_key = list_key if _sections(annotation) else list_key + ITEM
            lines += _section_lines(sub_key, subsections, recipe)
    if recipe is not None:
        values = recipe_values(recipe, parts)
        lines.append("")
        lines.append(f"in {recipe.source_label}:")
        if not values:
            lines.append("  (not set for this recipe)")
        for where, value in values:
            if isinstance(value, BaseModel | list) and (
                isinstance(value, BaseModel) or any(isinstance(v, BaseModel) for v in value)
            ):
                lines.append(f"  {where}:")
                lines += _yaml_lines(value, "    ")
            else:
                lines.append(f"  {where} = {render_value(value)}")
    return "\n".join(lines)
