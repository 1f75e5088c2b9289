"""Shared machinery for the typed recipe schema: strict base model, YAML loading, `--set` overrides.

Why pydantic in strict mode: YAML happily turns `lr: 3e-4` into a string and `steps: "10"` into a
string; a silently coerced or ignored key is exactly the recipe drift users complain about
(LESSONS.md). Unknown keys are errors, types are not coerced (except int -> float), and every
problem is reported as `file: dotted.key: problem (what to do)`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from pretrain.core.errors import RecipeError

SEED_LIMIT = (
    2**32
)  # numpy's generators take seeds below 2**32 (a larger one was accepted, then failed or wrapped)


class Section(BaseModel):
    """Base of every recipe section: unknown keys are errors, values are not coerced, and a float is a finite
    number (`lr: .inf` was accepted and trained on)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, validate_default=True, frozen=False, allow_inf_nan=False
    )


class DuplicateKey(yaml.MarkedYAMLError):
    """A mapping names a key twice: YAML keeps the last value silently, so an edit of the first has no effect."""


class _RecipeLoader(yaml.SafeLoader):
    """Safe YAML loader that also reads `3e-4` / `1e6` as floats (YAML 1.1 requires a dot) and refuses a key
    given twice in one mapping (a duplicate key or section)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class says so
                break
            if first is not None:
                raise DuplicateKey(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {first.start_mark.line + 1}): YAML would keep only "
                    "the last one, so an edit of the other has no effect; keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_FLOAT_RE = re.compile(
    r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
)
_RecipeLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def _construct_float_or_int(loader: yaml.SafeLoader, node: yaml.Node) -> float | int:
    text = loader.construct_scalar(node)
    if re.fullmatch(r"[-+]?\d+", str(text)):
        return int(text)
    return float(str(text).lower().replace(".inf", "inf").replace(".nan", "nan"))


_RecipeLoader.add_constructor("tag:yaml.org,2002:float", _construct_float_or_int)


def load_yaml(path: Path) -> Any:
    """Read a YAML file safely; syntax errors become a `RecipeError` naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError([f"{path}: file not found (check the path)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError([f"{path}: cannot read recipe: {exc}"]) from None
    try:
        return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - _RecipeLoader derives from SafeLoader
    except RecursionError:
        raise RecipeError(
            [
                f"{path}: invalid YAML: nested too deeply to read (thousands of levels); a recipe is a few levels deep"
            ]
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError([f"{path}:{where}: invalid YAML: {problem} (fix the syntax)"]) from None


def parse_override_value(text: str) -> Any:
    """Parse the value of a `--set key=value` override with the same YAML rules as recipe files."""
    if text == "":
        return ""
    try:
        return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506
    except (yaml.YAMLError, RecursionError):
        return text


def apply_overrides(
    raw: dict, overrides: list[str], source: str = "--set", alternatives: tuple[tuple[str, ...], ...] = ()
) -> dict:
    """Apply `dotted.key=value` overrides to a raw recipe dict (lists are indexed by position).

    `alternatives` are groups of keys of which a recipe sets one (e.g. train.tokens / train.steps): an
    override of one key of a group removes the others the file set, so `--set train.steps=100` works on a
    recipe that gives its length in tokens.
    """
    problems = []
    overridden = {item.split("=", 1)[0].strip() for item in overrides if "=" in item}
    for group in alternatives:
        if overridden & set(group):
            for other in set(group) - overridden:
                _remove(raw, other)
    for item in overrides:
        if "=" not in item:
            problems.append(f"{source}: {item!r}: expected dotted.key=value (e.g. train.steps=100)")
            continue
        dotted, value_text = item.split("=", 1)
        keys = dotted.strip().split(".")
        node: Any = raw
        try:
            for key in keys[:-1]:
                if isinstance(node, list):
                    node = node[int(key)]
                else:
                    node = node.setdefault(key, {})
            last = keys[-1]
            value = parse_override_value(value_text)
            if isinstance(node, list):
                node[int(last)] = value
            elif isinstance(node, dict):
                node[last] = value
            else:
                raise TypeError
        except (ValueError, IndexError, TypeError, AttributeError):
            problems.append(
                f"{source}: {dotted}: cannot set this key (its parent is not a section or list index)"
            )
    if problems:
        raise RecipeError(problems)
    return raw


def _remove(raw: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    node: Any = raw
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


_HINTS = {
    "extra_forbidden": "unknown key; remove it or check its spelling",
    "missing": "required key; add it",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping of key: value",
    "model_type": "expected a mapping of key: value",
    "literal_error": None,
    "greater_than": None,
    "greater_than_equal": None,
    "less_than": None,
    "less_than_equal": None,
}


# Tags of discriminated unions (e.g. data.sources[].type) that pydantic inserts into error locations;
# they are not keys the user wrote, so they are dropped from the dotted path.
UNION_TAGS: set[str] = set()


def _dotted(loc: tuple) -> str:
    parts = []
    for i, p in enumerate(loc):
        if str(p).startswith("function-") or (p in UNION_TAGS and i > 0 and isinstance(loc[i - 1], int)):
            continue
        parts.append(str(p))
    return ".".join(parts)


def format_validation_error(exc: ValidationError, source: str) -> list[str]:
    """Turn a pydantic error into `file: dotted.key: problem (what to do)` lines."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = _dotted(err["loc"])
        kind = err["type"]
        msg = err["msg"]
        if kind == "value_error":
            msg = msg.removeprefix("Value error, ")
        hint = _HINTS.get(kind)
        got = err.get("input")
        detail = msg if hint is None else f"{hint}"
        if kind not in ("missing", "extra_forbidden", "value_error") and not isinstance(got, dict | list):
            detail += f", got {got!r}"
        elif kind == "extra_forbidden":
            detail = f"unknown key {loc.rsplit('.', 1)[-1]!r}; remove it or check its spelling"
        lines.append(f"{source}: {loc or '<root>'}: {detail}")
    return lines
