"""Strict JSON bodies: types without coercion, repeated keys found wherever they are."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from servicekit.bodies import decode_strict, duplicate_key, is_json_media_type
from servicekit.errors import InvalidBodyField


class Line(msgspec.Struct, forbid_unknown_fields=True):
    sku: str
    quantity: int


class Body(msgspec.Struct, forbid_unknown_fields=True):
    lines: list[Line]


def has_repeat(text: str) -> bool:
    repeated = False

    def pairs(members: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        repeated = repeated or len({key for key, _ in members}) != len(members)
        return dict(members)

    json.loads(text, object_pairs_hook=pairs)
    return repeated


# JSON texts built as member lists, so objects can repeat keys (a dict could not).
keys = st.sampled_from(["a", "b", "sku", "\\u0061", 'q\\"'])
scalars = st.one_of(st.integers(), st.booleans(), st.none(), st.text(max_size=5).map(json.dumps))
json_texts = st.recursive(
    scalars.map(lambda value: value if isinstance(value, str) else json.dumps(value)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(keys, inner), max_size=4).map(
            lambda members: "{" + ",".join(f'"{key}" : {value}' for key, value in members) + "}"
        ),
    ),
    max_leaves=12,
)


@given(json_texts)
def test_duplicate_key_finds_a_repeat_exactly_when_one_object_has_one(text: str) -> None:
    assert (duplicate_key(text.encode()) is not None) == has_repeat(text)


def test_duplicate_key_names_the_path_of_the_repeated_key() -> None:
    body = b'{"lines": [{"sku": "a"}, {"sku": "b", "sku": "c"}]}'

    assert duplicate_key(body) == "lines[1].sku"


def test_an_escaped_key_is_the_same_key() -> None:
    assert duplicate_key(b'{"a": 1, "\\u0061": 2}') == "a"


@pytest.mark.parametrize("quantity", ['"1"', "1.0", "1e0", "true"])
def test_decoding_is_strict_and_names_the_field(quantity: str) -> None:
    body = f'{{"lines": [{{"sku": "a", "quantity": {quantity}}}]}}'.encode()

    with pytest.raises(InvalidBodyField) as raised:
        decode_strict(body, Body)

    assert raised.value.field == "lines[0].quantity"


def test_a_missing_field_of_the_body_is_named_as_the_body() -> None:
    with pytest.raises(InvalidBodyField) as raised:
        decode_strict(b"{}", Body)

    assert raised.value.field == ""
    assert "lines" in raised.value.message


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/problem+json", True),
        ("text/plain", False),
        ("application/jsonx", False),
        ("text/json+json", False),
        ("", False),
        (None, False),
    ],
)
def test_json_media_types(content_type: str | None, expected: bool) -> None:
    assert is_json_media_type(content_type) is expected
