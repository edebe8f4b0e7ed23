"""`relay-asyncapi`: generate asyncapi.yaml, the contract external consumers code against.

The document is built from the code that defines the messages: the domain's
event Structs (payloads, via msgspec's JSON Schema generation, the same as
`schemas/`), the envelope's header list, and the relay's topic naming. A test
fails when the committed file drifts from what this module generates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec
import yaml
from fulfilment.events import event_name

from relay_service.envelope import HEADERS
from relay_service.settings import RelaySettings
from relay_service.topics import CHANNELS

__all__ = ["build_document", "main"]

KAFKA_BINDING = "0.5.0"
_OPTIONAL_HEADERS = {"ce_correlationid", "ce_causationid", "ce_traceparent", "ce_actor"}
_REQUIRED_HEADERS = [name for name in HEADERS if name not in _OPTIONAL_HEADERS]

DESCRIPTION = """\
Every event recorded by the fulfilment suite's event store, published by the relay.

**Envelope.** CloudEvents 1.0 in Kafka *binary* mode: the record value is the event's
JSON (its schema below and in `schemas/<type>.v<N>.json`), the CloudEvents attributes
are `ce_*` headers, and the record key is the stream id (`ce_subject`).

**How to consume.**
- Every topic below exists from the moment the relay runs, before its first event.
- Subscribe with your own consumer group id; each group gets every event.
- Order: events of one stream (one key) arrive in `ce_streamversion` order, because a key
  always maps to one partition. There is no order across streams or topics.
- Delivery is at least once: after a relay crash or a Kafka outage, events already
  delivered may come again. Deduplicate on `ce_id`, or keep the last applied
  `ce_streamversion` per `ce_subject` and skip anything not above it.
- A payload's fields may grow (additive changes keep `ce_schemaversion`): ignore fields you
  do not know. A breaking change gets a new `ce_schemaversion` and schema file.
- `ce_schemaversion` is the version of the payload in the record: events stored at an
  older version are upcast to the current one before they are published.
"""


def _headers_schema(event_type: type[msgspec.Struct], version: int) -> dict[str, Any]:
    properties: dict[str, Any] = {
        name: {"type": "string", "description": text} for name, text in HEADERS.items()
    }
    properties["ce_specversion"]["const"] = "1.0"
    properties["content-type"]["const"] = "application/json"
    properties["ce_type"]["const"] = event_name(event_type)
    properties["ce_schemaversion"]["const"] = str(version)
    properties["ce_streamversion"]["pattern"] = "^[0-9]+$"
    properties["ce_position"]["pattern"] = "^[0-9]+$"
    properties["ce_time"]["format"] = "date-time"
    properties["ce_id"]["format"] = "uuid"
    return {"type": "object", "required": _REQUIRED_HEADERS, "properties": properties}


def build_document(settings: RelaySettings) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for the topics the relay publishes with `settings`."""
    all_types = [t for types in CHANNELS.values() for t in types]
    _, schemas = msgspec.json.schema_components(all_types, ref_template="#/components/schemas/{name}")
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for category, types in CHANNELS.items():
        topic = f"{settings.relay_topic_prefix}{category}"
        refs = {}
        for event_type in types:
            name = event_name(event_type)
            version = int(getattr(event_type, "schema_version", 1))
            messages[name] = {
                "name": name,
                "title": f"{name} (schema v{version})",
                "summary": (event_type.__doc__ or name).strip().splitlines()[0],
                "contentType": "application/json",
                "headers": _headers_schema(event_type, version),
                "payload": {"$ref": f"#/components/schemas/{event_type.__name__}"},
                "correlationId": {"location": "$message.header#/ce_correlationid"},
                "bindings": {
                    "kafka": {
                        "key": {"type": "string", "description": f"the stream id, {category}-<id>"},
                        "bindingVersion": KAFKA_BINDING,
                    }
                },
                "description": f"Payload schema file: `schemas/{name}.v{version}.json`.",
            }
            refs[name] = {"$ref": f"#/components/messages/{name}"}
        channels[category] = {
            "address": topic,
            "title": f"{category} events",
            "description": f"Every event of every `{category}-*` stream, keyed by stream id.",
            "messages": refs,
            "bindings": {
                "kafka": {
                    "topic": topic,
                    "partitions": settings.relay_partitions,
                    "replicas": settings.relay_replication_factor,
                    "bindingVersion": KAFKA_BINDING,
                }
            },
        }
        operations[f"consume{category.title()}Events"] = {
            "action": "receive",
            "title": f"Consume {category} events",
            "summary": f"Read {topic} with a consumer group of your own.",
            "channel": {"$ref": f"#/channels/{category}"},
            "messages": [{"$ref": f"#/channels/{category}/messages/{name}"} for name in refs],
            "bindings": {
                "kafka": {
                    "groupId": {"type": "string", "description": "your consumer group"},
                    "bindingVersion": KAFKA_BINDING,
                }
            },
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Fulfilment events",
            "version": "1.0.0",
            "description": DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": settings.kafka_bootstrap_servers.split(",")[0],
                "protocol": "kafka",
                "description": "The docker-free local stack (`./dev up`); plaintext, no auth.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


class _Dumper(yaml.SafeDumper):
    """Writes multi-line text as literal blocks, so the descriptions read as written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def render(settings: RelaySettings) -> str:
    header = "# Generated by `relay-asyncapi` from the code; do not edit by hand.\n"
    body = yaml.dump(build_document(settings), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay-asyncapi", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("asyncapi.yaml"))
    parser.add_argument("--check", action="store_true", help="fail if the file differs from the code")
    args = parser.parse_args(argv)
    # The document describes the default deployment; servers use the local stack's address.
    settings = msgspec.convert(
        {"database_url": "postgresql://unused/x", "kafka_bootstrap_servers": "127.0.0.1:59092"}, RelaySettings
    )
    text = render(settings)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(
                f"{args.output} is out of date: run `relay-asyncapi --output {args.output}`", file=sys.stderr
            )
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0
