"""Strict JSON request bodies: one rule for every endpoint of every service.

A body is decoded once, straight into its msgspec `Struct`, with `strict=True`
(Litestar's own conversion would accept `"1"` for an integer). A body that is not
`application/json` (or `…+json`) is refused with 415 before it is read; one with a
repeated key is refused naming the key, because JSON parsers disagree on which
value wins (how it is checked cheaply: `docs/architecture.md`).
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from servicekit.errors import InvalidBodyField

__all__ = [
    "decode_strict",
    "duplicate_key",
    "is_json_media_type",
]


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a `Content-Type` header names JSON: `application/json` or a `+json` type, any parameters."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


# msgspec ends a validation message with the path of the offending value: "... - at `$.lines[0].sku`".
_AT_PATH = re.compile(r" - at `\$\.?(?P<path>.*)`$", re.DOTALL)


def decode_strict[T](body: bytes, type_: type[T]) -> T:
    """`body` decoded into `type_` without coercion; `InvalidBodyField` names the field that is wrong.

    Input that is not JSON raises `msgspec.DecodeError` (and `UnicodeDecodeError` for bytes that are
    not UTF-8), as `msgspec.json.decode` does; so does a repeated key (`InvalidBodyField`).
    """
    try:
        value = msgspec.json.decode(body, type=type_, strict=True)
    except msgspec.ValidationError as error:
        # Not `DecodeError`, its base: malformed JSON is not a field's fault.
        message = str(error)
        at = _AT_PATH.search(message)
        if at is None:
            raise InvalidBodyField("", message) from error
        raise InvalidBodyField(at["path"], message[: at.start()]) from error
    repeated = duplicate_key(body)
    if repeated is not None:
        raise InvalidBodyField(repeated, "Object contains this key more than once")
    return value


# A JSON string, optionally followed by the colon that makes it a key. Outside strings a JSON
# text holds no quotes, so scanning strings left to right never starts inside one.
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:)?', re.DOTALL)


def duplicate_key(body: bytes) -> str | None:
    """The path (`lines[0].sku`) of the first key that occurs twice in one object of the JSON `body`.

    `body` must be valid JSON. Cheap for the usual body, whose keys are all different texts.
    """
    text = body.decode()
    keys = [match[1] for match in _STRING.finditer(text) if match[2]]
    if len(set(keys)) == len(keys) and not any("\\" in key for key in keys):
        return None
    return _first_repeat(json.loads(text, object_pairs_hook=_Pairs), "")


class _Pairs(list[tuple[str, Any]]):
    """An object's members in order, repeats kept (the `object_pairs_hook` of the slow path)."""


def _first_repeat(value: Any, path: str) -> str | None:
    if isinstance(value, _Pairs):
        seen: set[str] = set()
        for key, member in value:
            key_path = f"{path}.{key}" if path else key
            if key in seen:
                return key_path
            seen.add(key)
            found = _first_repeat(member, key_path)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_repeat(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
