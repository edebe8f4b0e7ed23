"""The OpenAPI document of an HTTP service: its config, problem responses, strict body schemas.

Served as `/schema/openapi.json` and `/schema/openapi.yaml` (`/schema` answers JSON)
with no HTML viewer (Litestar's load scripts from a CDN without subresource
integrity). One `bearer` (JWT) scheme; each error is documented as an RFC 9457
problem, described per status by the service:

    responses = problem_responses(DESCRIPTIONS, 404, 409)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar._openapi.schema_generation.schema import SchemaCreator
from litestar.enums import ParamType
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIType,
    Operation,
    Parameter,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.typing import FieldDefinition

from servicekit.problems import PROBLEM_MEDIA_TYPE, Problem

__all__ = [
    "HeadersOperation",
    "OptionalBodyOperation",
    "StrictStructSchemaPlugin",
    "api_openapi_config",
    "header_parameter",
    "problem_responses",
]


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Documents `forbid_unknown_fields=True` Structs with `additionalProperties: false`.

    Litestar leaves it out, so the document would promise that unknown fields are
    fine while the service refuses them (a body with `total` is refused on purpose:
    totals are computed, never taken from the client). Schema fuzzing caught it.
    """

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        struct_type = field_definition.type_
        if (
            isinstance(struct_type, type)
            and issubclass(struct_type, msgspec.Struct)
            and struct_type.__struct_config__.forbid_unknown_fields
        ):
            schema.additional_properties = False
        return schema


@dataclass
class OptionalBodyOperation(Operation):
    """An operation whose body may be left out: `@post(..., operation_class=OptionalBodyOperation)`.

    For a handler whose `data` is optional (`Struct | None = None`, every field optional).
    Litestar documents every request body as required, so the document would refuse the
    body-less request the service accepts.
    """

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False


def header_parameter(name: str, description: str, **schema: Any) -> Parameter:
    """An optional string request header for `HeadersOperation.headers`; `schema` adds constraints
    (`pattern=...`, `max_length=...`), which the handler must check itself."""
    return Parameter(
        name=name,
        param_in=ParamType.HEADER,
        required=False,
        description=description,
        schema=Schema(type=OpenAPIType.STRING, default="", description=description, **schema),
    )


@dataclass
class HeadersOperation(Operation):
    """An operation that also lists `headers`: request headers its handler reads from the connection.

    A Litestar header parameter (`FromHeader`, a layered `parameters` entry) builds the request's
    header mapping and validates a signature model on every request, about 8 µs each: on a read
    that answers from one Redis call, more than the JWT check. A hot handler can read the raw ASGI
    headers itself and still have them documented: subclass this, name them, and pass the class as
    the route's `operation_class`.

        class ReadOperation(HeadersOperation):
            headers = (header_parameter("X-Consistency-Token", "...", pattern=r"^[0-9]{1,18}$"),)
    """

    headers: ClassVar[tuple[Parameter, ...]] = ()

    def __post_init__(self) -> None:
        self.parameters = [*(self.parameters or []), *self.headers]


def api_openapi_config(*, title: str, description: str, version: str = "1.0.0") -> OpenAPIConfig:
    """The document's config: title, the bearer (JWT) scheme, served under `/schema` as JSON and YAML."""
    return OpenAPIConfig(
        title=title,
        version=version,
        description=description,
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")}
        ),
        path="/schema",
        render_plugins=[JsonRenderPlugin(), YamlRenderPlugin()],
    )


def problem_responses(descriptions: Mapping[int, str], *statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem responses of `statuses`, described from `descriptions`."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=descriptions[status],
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for status in sorted(set(statuses))
    }
