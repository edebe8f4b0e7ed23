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


CASES: list[tuple[str, str, Callable[[Record], Record]]] = [
    # (test id, expected reason class, how to make the record hostile)
    ("invalid-utf8-value", "bad-bytes", lambda r: (r[0], b'{"type": "OrderPlaced", "customer_id": "\xff\xfe"}', _new_id(r[2]))),
    ("non-json-labelled-json", "bad-json", lambda r: (r[0], b"<html>not json</html>", _new_id(r[2]))),
    ("wrong-shape", "wrong-shape", lambda r: (r[0], b'{"type": "OrderPlaced", "lines": 3}', _new_id(r[2]))),
    ("unknown-type", "unknown-type", lambda r: (r[0], r[1], _with(r[2], "ce_type", b"OrderTeleported"))),
    ("schema-version-99", "unknown-schema-version", lambda r: (r[0], r[1], _with(r[2], "ce_schemaversion", b"99"))),
    ("missing-ce-time", "bad-headers", lambda r: (r[0], r[1], _with(r[2], "ce_time", None))),
    ("garbage-ce-subject", "bad-headers", lambda r: (r[0], r[1], _with(r[2], "ce_subject", b"\xff\xfeorder"))),
    ("garbage-schema-version", "bad-headers", lambda r: (r[0], r[1], _with(r[2], "ce_schemaversion", b"v1"))),
    ("missing-key", "bad-key", lambda r: (None, r[1], _new_id(r[2]))),
    ("superscript-position", "bad-position", lambda r: (r[0], r[1], _with(r[2], "ce_position", "²".encode()))),
    ("missing-position", "bad-position", lambda r: (r[0], r[1], _with(r[2], "ce_position", None))),
]  # fmt: skip

PARAMS = [pytest.param(reason, make, id=name) for name, reason, make in CASES]
