"""Stream ids: ``{category}-{id}``, where the category names the aggregate type."""

from __future__ import annotations

import re

from eventstore.errors import InvalidStreamId

__all__ = ["MAX_STREAM_ID_LENGTH", "MIN_STREAM_ID_LENGTH", "category_of", "check_stream_id"]

MIN_STREAM_ID_LENGTH = 3
MAX_STREAM_ID_LENGTH = 200

_CATEGORY = re.compile(r"[a-z][a-z0-9_]*")
# Whitespace and control characters make ids that look equal but are not, and break
# the places ids travel to (Kafka keys, log lines, URLs).
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def check_stream_id(stream_id: object) -> str:
    """Return ``stream_id`` if valid, else raise ``InvalidStreamId`` saying what is wrong."""
    if not isinstance(stream_id, str):
        raise InvalidStreamId(stream_id, "must be a str")
    if not MIN_STREAM_ID_LENGTH <= len(stream_id) <= MAX_STREAM_ID_LENGTH:
        raise InvalidStreamId(
            stream_id, f"length must be {MIN_STREAM_ID_LENGTH}..{MAX_STREAM_ID_LENGTH} characters"
        )
    if _FORBIDDEN.search(stream_id):
        raise InvalidStreamId(stream_id, "must not contain whitespace or control characters")
    category, dash, rest = stream_id.partition("-")
    if not dash or not rest:
        raise InvalidStreamId(stream_id, "must look like '{category}-{id}'")
    if not _CATEGORY.fullmatch(category):
        raise InvalidStreamId(stream_id, f"category {category!r} must match [a-z][a-z0-9_]*")
    return stream_id


def category_of(stream_id: str) -> str:
    """The category of a valid stream id: the text before its first '-'.

    >>> category_of("order-7f3e")
    'order'
    """
    return check_stream_id(stream_id).partition("-")[0]
