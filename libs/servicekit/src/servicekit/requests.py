"""The request class every service uses: a body that cannot be read is the client's mistake.

A body that is not UTF-8, nests past the parser's recursion limit, or never arrives
(the client hung up) would surface as a 500; here each becomes `MalformedBody` or
`ClientDisconnected`, answered as 400 (a disconnect logged at INFO only). A `Struct`
body goes through `servicekit.bodies`: 415 unless JSON, strict, repeated keys 422.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import InternalServerException

from servicekit.bodies import decode_strict, is_json_media_type
from servicekit.errors import ClientDisconnected, MalformedBody, UnsupportedMediaType

__all__ = ["ServiceRequest"]


class ServiceRequest(Request[Any, Any, Any]):
    """`Request` whose body decoding refuses unreadable input as a client error."""

    async def body(self) -> bytes:
        try:
            return await super().body()
        except InternalServerException as error:
            if "disconnect" in (error.detail or ""):
                raise ClientDisconnected("the client disconnected before sending its whole body") from error
            raise

    async def json(self) -> Any:
        body_type = _struct_body_type(self)
        try:
            if body_type is None:
                return await super().json()
            if not is_json_media_type(self.headers.get("content-type")):
                raise UnsupportedMediaType("the body must be sent as Content-Type: application/json")
            # Handed to Litestar as the Struct itself: its conversion of a Struct instance is a no-op.
            return decode_strict(await self.body(), body_type)
        except msgspec.DecodeError as error:
            raise MalformedBody(f"the body is not JSON: {error}") from error
        except UnicodeDecodeError as error:
            raise MalformedBody(f"the body is not valid UTF-8 (byte {error.start})") from error
        except RecursionError as error:
            raise MalformedBody("the body nests JSON deeper than this service reads") from error
        except ValueError as error:
            # JSON msgspec reads but the standard library's repeated-key check does not (an integer of
            # thousands of digits in a field the type ignores never gets this far; this is the backstop).
            raise MalformedBody(f"the body cannot be read: {error}") from error


def _struct_body_type(request: Request[Any, Any, Any]) -> Any:
    """The handler's body type when it is a Struct or an optional Struct (`X | None`), else None."""
    field = request.route_handler.parsed_data_field
    if field is None:
        return None
    inner = (
        [member for member in field.inner_types if not member.is_none_type] if field.is_optional else [field]
    )
    if len(inner) == 1 and inner[0].is_subclass_of(msgspec.Struct):
        return field.annotation
    return None
