"""Is a change to an event's schema safe under the same schema version?

An event's (name, schema version) names one shape for ever, so under one version only
additive changes pass: a new or removed optional field, new descriptions, titles and
examples. Anything else (a new required field, a removed or no-longer-required field,
a changed type or constraint) needs a new schema version and an upcaster
(`docs/event-store.md`, "Upcasting").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["breaking_changes", "unversioned_breaking_changes"]

# Keys that document rather than constrain.
_DOCUMENTATION = {"description", "title", "examples", "$comment", "x-event-name", "x-schema-version"}

type Schema = dict[str, Any]


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """The breaking differences from `old` to `new` (msgspec-generated documents with `$defs`)."""
    problems: list[str] = []
    _compare(_root(old), _root(new), old, new, "$", problems, seen=set())
    return problems


def _root(document: Schema) -> Schema:
    ref = document.get("$ref")
    return _resolve(document, ref) if isinstance(ref, str) else document


def _resolve(document: Schema, ref: str) -> Schema:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    resolved: Schema = node
    return resolved


def _compare(
    old: Schema, new: Schema, old_doc: Schema, new_doc: Schema, path: str, out: list[str], *, seen: set[str]
) -> None:
    if "$ref" in old or "$ref" in new:
        if "$ref" not in old or "$ref" not in new:
            out.append(f"{path}: changed between a reference and an inline schema")
            return
        key = f"{old['$ref']}|{new['$ref']}"
        if key in seen:
            return
        seen.add(key)
        _compare(
            _resolve(old_doc, old["$ref"]),
            _resolve(new_doc, new["$ref"]),
            old_doc,
            new_doc,
            path,
            out,
            seen=seen,
        )
        return
    old_props: Schema = old.get("properties", {})
    new_props: Schema = new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    for name in sorted(old_required - new_required):
        state = "removed" if name not in new_props else "no longer required"
        out.append(f"{path}.{name}: required field {state}")
    for name in sorted(new_required - old_required):
        out.append(f"{path}.{name}: newly required (stored events of this version lack it)")
    for name in sorted(old_props.keys() & new_props.keys()):
        _compare(old_props[name], new_props[name], old_doc, new_doc, f"{path}.{name}", out, seen=seen)
    for key in ("items", "additionalProperties"):
        if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            _compare(old[key], new[key], old_doc, new_doc, f"{path}[]", out, seen=seen)
    for key in ("anyOf", "oneOf", "allOf"):
        if old.get(key) != new.get(key) and (key in old or key in new):
            if len(old.get(key, [])) != len(new.get(key, [])):
                out.append(f"{path}: {key} alternatives changed")
            else:
                for i, (a, b) in enumerate(zip(old[key], new[key], strict=True)):
                    _compare(a, b, old_doc, new_doc, f"{path}<{key}{i}>", out, seen=seen)
    structural = {
        "properties",
        "required",
        "items",
        "additionalProperties",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
    }
    for key in sorted((old.keys() | new.keys()) - _DOCUMENTATION - structural):
        if old.get(key) != new.get(key):
            out.append(f"{path}: {key} changed from {old.get(key)!r} to {new.get(key)!r}")


def unversioned_breaking_changes(directory: Path, generated: dict[str, str]) -> list[str]:
    """Breaking changes between committed schema files and the generated ones of the same name."""
    problems: list[str] = []
    for name, text in sorted(generated.items()):
        path = directory / name
        if not path.is_file():
            continue  # a new event type or a new version: nothing to break
        for change in breaking_changes(json.loads(path.read_text()), json.loads(text)):
            problems.append(f"{name}: {change}")
    return problems
