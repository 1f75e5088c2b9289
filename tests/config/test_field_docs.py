"""Every recipe key is documented: each field of the JSON schema (sections, union members) has a description."""

from __future__ import annotations

from typing import Any

from pretrain.config import Recipe


def _refs(node: Any, suffix: str = "") -> list[tuple[str, str]]:
    """(definition name, key suffix) of every section a property's schema can hold.

    Follows `$ref`, union members (anyOf/oneOf/allOf), list items (suffix `[]`) and mapping values (`.*`).
    """
    if not isinstance(node, dict):
        return []
    ref = node.get("$ref")
    found = [(ref.rsplit("/", 1)[-1], suffix)] if isinstance(ref, str) else []
    for key in ("anyOf", "oneOf", "allOf"):
        for member in node.get(key, []):
            found += _refs(member, suffix)
    found += _refs(node.get("items"), suffix + "[]")
    found += _refs(node.get("additionalProperties"), suffix + ".*")
    return found


def undocumented_fields(schema: dict) -> list[str]:
    """Dotted keys (list items as `[]`) of every property without a non-empty description."""
    defs = schema.get("$defs", {})
    missing: set[str] = set()
    visited: set[tuple[str, str]] = set()

    def walk(section: dict, prefix: str) -> None:
        for name, prop in section.get("properties", {}).items():
            key = f"{prefix}.{name}" if prefix else name
            if not str(prop.get("description", "")).strip():
                missing.add(key)
            for target, suffix in _refs(prop):
                if (target, key + suffix) not in visited:
                    visited.add((target, key + suffix))
                    walk(defs[target], key + suffix)

    walk(schema, "")
    return sorted(missing)


def test_every_schema_field_has_a_description():
    schema = Recipe.model_json_schema()
    missing = undocumented_fields(schema)
    assert not missing, (
        f"{len(missing)} recipe key(s) lack a description= in src/pretrain/config: " + ", ".join(missing)
    )


def test_the_walk_reaches_nested_sections_and_union_members():
    schema = Recipe.model_json_schema()
    defs = schema["$defs"]
    # a field deep inside a discriminated-union member of a list, and one in an optional section
    defs["LocalSource"]["properties"]["doc_split"].pop("description")
    defs["SlurmConfig"]["properties"]["qos"].pop("description")
    assert {"data.executor.slurm.qos", "data.sources[].doc_split"} <= set(undocumented_fields(schema))
