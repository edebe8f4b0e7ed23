"""Records nobody's relay would write, one per reason class, made from a good record of the suite.

Each case turns a good record (key, value, headers) into a hostile one; its
`ce_id` is always new, so the hostile record is never the event the good one
carries. The consumers' tests write these straight into their topics.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

type Headers = list[tuple[str, bytes]]
type Record = tuple[bytes | None, bytes, Headers]


def _with(headers: Headers, name: str, value: bytes | None) -> Headers:
    """`headers` with `name` set to `value` (dropped when None) and a new `ce_id`."""
    fresh = [(n, v) for n, v in headers if n not in (name, "ce_id")]
    fresh.append(("ce_id", str(uuid.uuid4()).encode()))
    return fresh if value is None else [*fresh, (name, value)]


def _new_id(headers: Headers) -> Headers:
    return [*[(n, v) for n, v in headers if n != "ce_id"], ("ce_id", str(uuid.uuid4()).encode())]


def _value(value: bytes) -> Callable[[Record], Record]:
    return lambda record: (record[0], value, _new_id(record[2]))


def _header(name: str, value: bytes | None) -> Callable[[Record], Record]:
    return lambda record: (record[0], record[1], _with(record[2], name, value))


def _no_key(record: Record) -> Record:
    return None, record[1], _new_id(record[2])


CASES: list[tuple[str, str, Callable[[Record], Record]]] = [
    # (test id, expected reason class, how to make the record hostile)
    ("invalid-utf8-value", "bad-bytes", _value(b'{"type": "OrderPlaced", "customer_id": "\xff\xfe"}')),
    ("non-json-labelled-json", "bad-json", _value(b"<html>not json</html>")),
    ("wrong-shape", "wrong-shape", _value(b'{"type": "OrderPlaced", "lines": 3}')),
    ("unknown-type", "unknown-type", _header("ce_type", b"OrderTeleported")),
    ("schema-version-99", "unknown-schema-version", _header("ce_schemaversion", b"99")),
    ("missing-ce-time", "bad-headers", _header("ce_time", None)),
    ("garbage-ce-subject", "bad-headers", _header("ce_subject", b"\xff\xfeorder")),
    ("garbage-schema-version", "bad-headers", _header("ce_schemaversion", b"v1")),
    ("missing-key", "bad-key", _no_key),
    ("superscript-position", "bad-position", _header("ce_position", "²".encode())),
    ("missing-position", "bad-position", _header("ce_position", None)),
]

PARAMS = [pytest.param(reason, make, id=name) for name, reason, make in CASES]
