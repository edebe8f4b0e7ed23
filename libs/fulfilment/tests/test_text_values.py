"""Text values: whole-string patterns, no control or bidirectional control characters anywhere."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from fulfilment.values import CurrencyCode, CustomerId, ProductName, ProviderReference, Reason, Sku
from hypothesis import given
from hypothesis import strategies as st

VALID = {Sku: "SKU-1", CurrencyCode: "EUR", CustomerId: "alice", Reason: "late", ProductName: "Mug"}
VALID[ProviderReference] = "psp-1"
FREE_TEXT = [CustomerId, Reason, ProductName, ProviderReference]

controls = st.one_of(
    st.characters(min_codepoint=0x00, max_codepoint=0x1F),
    st.characters(min_codepoint=0x7F, max_codepoint=0x9F),
    st.characters(min_codepoint=0x202A, max_codepoint=0x202E),
    st.characters(min_codepoint=0x2066, max_codepoint=0x2069),
)


def refused(value: str, type_: Any) -> bool:
    try:
        msgspec.convert(value, type_)
    except msgspec.ValidationError:
        return True
    return False


@pytest.mark.parametrize("type_", list(VALID), ids=lambda t: str(t.__metadata__[0].pattern))
def test_a_trailing_newline_is_refused(type_: Any) -> None:
    assert not refused(VALID[type_], type_)
    assert refused(VALID[type_] + "\n", type_)


@given(
    type_=st.sampled_from(list(VALID)),
    control=controls,
    where=st.integers(min_value=0, max_value=5),
)
def test_a_control_character_anywhere_is_refused(type_: Any, control: str, where: int) -> None:
    valid = VALID[type_]
    at = min(where, len(valid))

    assert refused(valid[:at] + control + valid[at:], type_)


@given(type_=st.sampled_from(FREE_TEXT), text=st.text(min_size=1, max_size=50))
def test_free_text_is_refused_exactly_when_it_holds_a_control_character(type_: Any, text: str) -> None:
    bad = any(
        ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069
        for c in text
    )

    assert refused(text, type_) is bad
