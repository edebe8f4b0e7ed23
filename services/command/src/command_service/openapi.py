"""The OpenAPI document the service serves: /schema/openapi.json and /schema/openapi.yaml (and /schema, JSON).

No HTML viewer: Litestar's viewers load their scripts from a CDN, without subresource
integrity, into a page on the service's own origin. Any viewer can read the JSON.
"""

from __future__ import annotations

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar._openapi.schema_generation.schema import SchemaCreator
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, Schema, SecurityScheme
from litestar.typing import FieldDefinition

__all__ = ["StrictStructSchemaPlugin", "openapi_config"]


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


def openapi_config() -> OpenAPIConfig:
    """Title, bearer security scheme and renderer of the document."""
    return OpenAPIConfig(
        title="Fulfilment command API",
        version="1.0.0",
        description="One endpoint per command. Every command needs a bearer token carrying the role its "
        "operation names, and an Idempotency-Key; bodies are strict JSON (see the service's README); "
        "errors are RFC 9457 problem details (`application/problem+json`).",
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")}
        ),
        path="/schema",
        render_plugins=[JsonRenderPlugin(), YamlRenderPlugin()],
    )
