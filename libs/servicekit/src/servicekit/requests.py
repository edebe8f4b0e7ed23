"""The request class every service uses: a body that cannot be read is the client's mistake.

Litestar decodes a JSON body with msgspec; a body that is not UTF-8 raises
`UnicodeDecodeError`, and one nested deeper than the parser's recursion limit
`RecursionError`, which would otherwise surface as a 500. A client that hangs
up before its body arrives surfaces as an internal error too. Here each
becomes the kit's own refusal (`MalformedBody`, `ClientDisconnected`), which
the problem table answers as a 400 (and logs a disconnect only at INFO: it is
the network, not a fault).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import InternalServerException

from servicekit.errors import ClientDisconnected, MalformedBody

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
        try:
            return await super().json()
        except UnicodeDecodeError as error:
            raise MalformedBody(f"the body is not valid UTF-8 (byte {error.start})") from error
        except RecursionError as error:
            raise MalformedBody("the body nests JSON deeper than this service reads") from error
