"""The OpenAPI document of an HTTP service: its config, problem responses, strict body schemas.

Every API of the suite serves its document at `/schema` (JSON at
`/schema/openapi.json`), declares one `bearer` (JWT) security scheme, and
documents each error an operation can give as an RFC 9457 problem
(`application/problem+json`). A service names its own descriptions per status:

    responses = problem_responses(DESCRIPTIONS, 404, 409)
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar._openapi.schema_generation.schema import SchemaCreator
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, Schema, SecurityScheme
from litestar.typing import FieldDefinition

from servicekit.problems import PROBLEM_MEDIA_TYPE, Problem

__all__ = ["StrictStructSchemaPlugin", "api_openapi_config", "problem_responses"]


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


def api_openapi_config(*, title: str, description: str, version: str = "1.0.0") -> OpenAPIConfig:
    """The document's config: title, the bearer (JWT) security scheme, served at `/schema`."""
    return OpenAPIConfig(
        title=title,
        version=version,
        description=description,
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")}
        ),
        path="/schema",
        render_plugins=[ScalarRenderPlugin()],
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
