"""The recipe schema as dotted keys: split/join a key, resolve it to its pydantic field(s), list all keys.

    resolve("data.sources[].weight")   # -> [KeyField(...)] (several when the key is in several union members)
    all_keys()                         # every key of the schema, list items written `[]`

The schema's pydantic fields are the one home of every description; this module only walks them.
Keys of a list of sections take an index (`sources.0`) or `[]` (`sources[]`); keys that exist in
only some members of a union (e.g. `path` of `type: hub` sources) say which. An unknown key raises
`PretrainError` naming close matches. `pretrain explain` (config/explain.py) renders what it finds.
"""

from __future__ import annotations

import difflib
import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pretrain.config import Recipe
from pretrain.core.errors import PretrainError

ITEM = "[]"  # a key part meaning "every item of the list"


@dataclass(frozen=True)
class KeyField:
    """One schema field reached by a dotted key: the section class that declares it, and its union member."""

    name: str
    info: FieldInfo
    owner: type[BaseModel]
    variant: str | None  # e.g. "type: hub" when the owner is one member of a discriminated union
    members: int  # how many union members the key was looked up in (1 outside a union)


def split_key(key: str) -> list[str]:
    """`data.sources[0].weight` / `data.sources.0.weight` / `data.sources[].weight` -> parts."""
    text = re.sub(r"\[(\d*)\]", lambda m: "." + (m.group(1) or ITEM), key.strip())
    return [p for p in text.split(".") if p]


def join_key(parts: list[str]) -> str:
    """Parts -> the canonical dotted key (`[]` or `.N` after a list)."""
    out = ""
    for part in parts:
        out += part if part == ITEM else ("." if out else "") + part
    return out


def _unwrap(annotation: Any) -> list[Any]:
    """The members of an Optional / Union / Annotated type, flattened."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _unwrap(a)]
    return [annotation]


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _sections(annotation: Any) -> list[type[BaseModel]]:
    """Section classes a value of this type can be (an optional section counts)."""
    return [m for m in _unwrap(annotation) if _is_section(m)]


def _item_sections(annotation: Any) -> list[type[BaseModel]]:
    """Section classes of the items of a list-of-sections type (empty for anything else)."""
    for member in _unwrap(annotation):
        if get_origin(member) is list:
            return _sections(get_args(member)[0])
    return []


def _is_mapping(annotation: Any) -> bool:
    """A `dict[...]` field: its keys are the user's (source names, sbatch options), not the schema's."""
    return annotation is not None and any(get_origin(m) is dict for m in _unwrap(annotation))


def _variant(section: type[BaseModel], members: list[type[BaseModel]]) -> str | None:
    """`type: hub` for a member of a union tagged by a `type` literal; None outside a union."""
    if len(members) < 2:
        return None
    tag = section.model_fields.get("type")
    values = get_args(tag.annotation) if tag is not None and get_origin(tag.annotation) is Literal else ()
    return f"type: {values[0]}" if values else section.__name__


def all_keys() -> list[str]:
    """Every dotted key of the schema (list items written `[]`), depth first."""
    keys: list[str] = []

    def walk(prefix: str, sections: list[type[BaseModel]]) -> None:
        seen: set[str] = set()
        for section in sections:
            for name, info in section.model_fields.items():
                if name in seen:
                    continue
                seen.add(name)
                key = f"{prefix}.{name}" if prefix else name
                keys.append(key)
                walk(key, _sections(info.annotation))
                walk(key + ITEM, _item_sections(info.annotation))

    walk("", [Recipe])
    return keys


def resolve(key: str) -> list[KeyField]:
    """The schema field(s) a dotted key names (several when the key is in several union members).

    Raises `PretrainError` for a key the schema does not define, suggesting close matches.
    """
    parts = split_key(key)
    if not parts:
        raise PretrainError("explain: give a key, e.g. train.optimizer.lr (or a section, e.g. train)")
    sections: list[type[BaseModel]] = [Recipe]
    items: list[type[BaseModel]] = []  # the item sections when the previous part was a list field
    fields: list[KeyField] = []
    for i, part in enumerate(parts):
        parent = join_key(parts[:i])
        if part == ITEM or part.isdigit():
            if not items:
                raise _unknown(key, f"{parent or 'the recipe'} is not a list of sections; drop {part!r}")
            sections, items, fields = items, [], []
            continue
        if not sections:
            if _is_mapping(fields[0].info.annotation if fields else None) and i == len(parts) - 1:
                return (
                    fields  # an entry of a free-form mapping (a stage's source weights): the mapping's field
                )
            if items:
                why = f"{parent} is a list of sections; index it: {parent}[].{part} or {parent}.0.{part}"
            else:
                why = f"{parent} is a value, not a section; it has no key {part!r}"
            raise _unknown(key, why)
        fields = [
            KeyField(part, s.model_fields[part], s, _variant(s, sections), len(sections))
            for s in sections
            if part in s.model_fields
        ]
        if not fields:
            where = parent or "the recipe"
            raise _unknown(key, f"{where} has no key {part!r}")
        annotation = fields[0].info.annotation
        sections, items = _sections(annotation), _item_sections(annotation)
    return fields


def _unknown(key: str, why: str) -> PretrainError:
    candidates = all_keys()
    canonical = join_key(split_key(key))
    wanted = re.sub(r"\.\d+", ITEM, canonical)
    last = split_key(key)[-1] if split_key(key) else ""
    same_name = [c for c in candidates if c.rsplit(".", 1)[-1].removesuffix(ITEM) == last]
    close = list(dict.fromkeys(same_name + difflib.get_close_matches(wanted, candidates, n=5, cutoff=0.6)))
    hint = (
        f"; did you mean {', '.join(close[:5])}?"
        if close
        else "; `pretrain explain train` lists a section's keys"
    )
    return PretrainError(f"explain: unknown recipe key {key!r}: {why}{hint}")
