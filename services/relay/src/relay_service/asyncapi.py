"""`relay-asyncapi`: generate asyncapi.yaml, the contract external consumers code against.

The document is built from the code that defines the messages: the domain's
event Structs (payloads, via msgspec's JSON Schema generation, the same as
`schemas/`), the envelope's header list, the relay's topic naming and settings,
and, as each message's example, the envelope the relay makes of a sample event
(`relay_service.examples`, which a test runs through a real relay and Kafka). A
test fails when the committed file drifts from what this module generates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec
import yaml
from fulfilment.events import event_name
from fulfilment.registry import build_registry
from fulfilment.superseded import SUPERSEDED_EVENTS

from relay_service.envelope import HEADERS, KafkaMessage
from relay_service.examples import example_messages
from relay_service.settings import RelaySettings
from relay_service.topics import CHANNELS, contract_topics

__all__ = ["STREAM_IDS", "VARYING_HEADERS", "build_document", "main"]

KAFKA_BINDING = "0.5.0"
# The document's own version (semver): the major moves when a message's payload gets a new
# schema version (2: ProductRegistered v2), the minor when messages or optional fields are added.
CONTRACT_VERSION = "2.0.0"
_OPTIONAL_HEADERS = {"ce_correlationid", "ce_causationid", "ce_traceparent", "ce_actor"}
_REQUIRED_HEADERS = [name for name in HEADERS if name not in _OPTIONAL_HEADERS]
# Made anew for every event: an example shows their form, not a value to expect.
VARYING_HEADERS = ("ce_id", "ce_time", "ce_position")

_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Each category's stream ids (the record key and `ce_subject`): pattern, and how the docs write it.
STREAM_IDS: dict[str, tuple[str, str]] = {
    "order": (f"^order-{_UUID}$", "order-<order uuid>"),
    "stock": ("^stock-[a-z0-9][a-z0-9_-]{0,63}$", "stock-<sku in lower case>"),
    "payment": (f"^payment-{_UUID}$", "payment-<order uuid>"),
}

_DESCRIPTION = """\
Every event recorded by the fulfilment suite's event store, published by the relay.

**Envelope.** CloudEvents 1.0 in Kafka *binary* mode: the record value is the event's
JSON (its schema below, also served at the URI in `ce_dataschema`), the CloudEvents
attributes are `ce_*` headers (UTF-8 strings), and the record key is the stream id
(`ce_subject`). Each message below has an example: what the relay publishes for a sample
event (a test runs the same samples through a real relay and Kafka and compares).

**Topics.** One per stream category: {topics}. Each exists from the moment the relay
runs, before its first event, so subscribing early is safe. The relay creates them with
{partitions} partitions and `retention.ms` = {retention_ms} ({retention}): Kafka deletes
events older than that.

**Keys and partitions.** The key is the UTF-8 bytes of the stream id: `order-<order uuid>`,
`stock-<sku in lower case>` or `payment-<order uuid>` (a payment stream has its order's uuid).
The relay uses Kafka's default partitioner, murmur2 of the key bytes modulo the partition
count, so every event of a stream lands in one partition. Consuming needs none of this; only
a client that produced to these topics itself would need a murmur2-compatible partitioner.

**How to consume.**
- Use a consumer group id of your own; each group gets every event.
- A new group starts at the end of each topic unless it sets `auto.offset.reset=earliest`:
  set it to read everything the topics still hold.
- Order: events of one stream (one key) arrive in `ce_streamversion` order. There is no order
  across streams or topics.
- Delivery is at least once: after a relay crash or restart, or a Kafka outage, events already
  delivered may come again (same `ce_id`, same `ce_position`). Deduplicate on `ce_id`, or keep
  the last applied `ce_streamversion` per `ce_subject` and skip anything not above it.
- `ce_position` is the event's place in the store's global log. It follows the order in which
  events became visible in the store, across all topics, and the relay never skips an event
  (the log is gap-safe), though numbers may be missing (rolled-back appends, categories not
  published). Within a partition it only grows, except where a redelivery repeats earlier
  events. Keep the highest position applied to deduplicate, and to tell whether a write has
  reached you: the query service's consistency token is a log position too.

**Older history and replays.** Kafka keeps {retention}; the event store keeps everything, and
is the only source of history. The suite's own read models rebuild from the store's global
log, never from a topic at offset 0 (the projector's rebuild). An external consumer that needs
more than the topics hold asks for a replay: a second relay with its own `RELAY_TOPIC_PREFIX`,
`RELAY_CHECKPOINT` and `RELAY_LOCK_KEY` publishes the whole log again, from the first event,
into topics of its own, in the same envelope (docs/relay.md, "Replays and older history").

**Schema evolution.** `ce_schemaversion` is a string of digits naming the version of the
payload in the record, and `ce_dataschema` the URI of that version's JSON Schema (also in the
repository as `schemas/<type>.v<N>.json`). Versions are not published side by side: the relay
upcasts events stored at an older version, so every record carries its type's current version.
Additive changes (new optional fields) keep the version: ignore fields you do not know. A
breaking change gets the next version and a new schema file, and from then on the relay sends
only that one; the earlier version's schema stays published (in `schemas/` and at the relay)
for consumers that still hold it. Types past their first version: {superseded}.
A consumer meeting a `ce_type` it does not know, or a `ce_schemaversion` above the one it was
written for, must not guess: it skips and records the record (a dead letter, a
metric) or stops and alerts, as its needs demand, and never passes silently over an event it
depends on.
"""


def _duration(ms: int) -> str:
    if ms < 0:
        return "forever"
    days, rest = divmod(ms, 86_400_000)
    return f"{days} days" if days and not rest else f"{ms} ms"


def _earlier_versions() -> dict[str, list[int]]:
    """Each event type that has had a breaking change: the schema versions it had before."""
    earlier: dict[str, list[int]] = {}
    for event_type in SUPERSEDED_EVENTS:
        earlier.setdefault(event_name(event_type), []).append(event_type.schema_version)
    return {name: sorted(versions) for name, versions in sorted(earlier.items())}


def _versions(versions: list[int]) -> str:
    return ", ".join(f"v{version}" for version in versions)


def _description(settings: RelaySettings) -> str:
    current = {event_name(t): int(getattr(t, "schema_version", 1)) for ts in CHANNELS.values() for t in ts}
    superseded = [
        f"`{name}` (v{current[name]}; {_versions(versions)} published upcast to v{current[name]})"
        for name, versions in _earlier_versions().items()
    ]
    return _DESCRIPTION.format(
        topics=", ".join(f"`{topic}`" for topic in sorted(contract_topics(settings.relay_topic_prefix))),
        partitions=settings.relay_partitions,
        retention_ms=settings.relay_retention_ms,
        retention=_duration(settings.relay_retention_ms),
        superseded=", ".join(superseded) or "none",
    )


def _message_description(name: str, version: int, dataschema_base: str) -> str:
    text = (
        f"Payload schema: the URI in `ce_dataschema` (by default "
        f"`{dataschema_base}{name}.v{version}.json`, served by the relay), "
        f"also the file `schemas/{name}.v{version}.json`."
    )
    earlier = _earlier_versions().get(name)
    if earlier:
        text += (
            f"\n\nEvents stored at {_versions(earlier)}, before the type's last breaking change, are "
            f"published upcast to v{version}: `ce_schemaversion` {version}, the v{version} `ce_dataschema` "
            f"and payload. Nothing is sent at an earlier version; the earlier schemas stay published "
            f"for consumers that still hold them: "
            + ", ".join(f"`{dataschema_base}{name}.v{v}.json`" for v in earlier)
            + "."
        )
    return text


def _headers_schema(category: str, event_type: type[msgspec.Struct], version: int) -> dict[str, Any]:
    properties: dict[str, Any] = {
        name: {"type": "string", "description": text} for name, text in HEADERS.items()
    }
    properties["ce_specversion"]["const"] = "1.0"
    properties["content-type"]["const"] = "application/json"
    properties["ce_type"]["const"] = event_name(event_type)
    # Digits, not a constant: a consumer that validates against this document must not
    # reject the next version of the payload.
    properties["ce_schemaversion"]["pattern"] = "^[0-9]+$"
    properties["ce_schemaversion"]["examples"] = [str(version)]
    properties["ce_subject"]["pattern"] = STREAM_IDS[category][0]
    properties["ce_streamversion"]["pattern"] = "^[0-9]+$"
    properties["ce_position"]["pattern"] = "^[0-9]+$"
    properties["ce_time"]["format"] = "date-time"
    properties["ce_id"]["format"] = "uuid"
    properties["ce_dataschema"]["format"] = "uri"
    return {"type": "object", "required": _REQUIRED_HEADERS, "properties": properties}


def _example(message: KafkaMessage) -> dict[str, Any]:
    headers = {name: value.decode() for name, value in message.headers}
    return {
        "name": headers["ce_type"],
        "summary": f"Key {message.key.decode()}, topic {message.topic}; "
        f"{', '.join(VARYING_HEADERS)} differ for every event.",
        "headers": headers,
        "payload": msgspec.json.decode(message.value),
    }


def build_document(settings: RelaySettings) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for the topics the relay publishes with `settings`."""
    all_types = [t for types in CHANNELS.values() for t in types]
    _, schemas = msgspec.json.schema_components(all_types, ref_template="#/components/schemas/{name}")
    examples = example_messages(
        build_registry(),
        source=settings.relay_source,
        topic_prefix=settings.relay_topic_prefix,
        dataschema_base=settings.relay_dataschema_base,
    )
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for category, types in CHANNELS.items():
        topic = f"{settings.relay_topic_prefix}{category}"
        refs = {}
        for event_type in types:
            name = event_name(event_type)
            messages[name] = _message(category, event_type, examples[name], settings.relay_dataschema_base)
            refs[name] = {"$ref": f"#/components/messages/{name}"}
        channels[category] = _channel(category, topic, refs, settings)
        operations[f"consume{category.title()}Events"] = _operation(category, topic, refs)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Fulfilment events",
            "version": CONTRACT_VERSION,
            "description": _description(settings),
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


def _message(
    category: str, event_type: type[msgspec.Struct], example: KafkaMessage, dataschema_base: str
) -> dict[str, Any]:
    """One event type's message: its headers, payload schema, Kafka key and example."""
    name = event_name(event_type)
    version = int(getattr(event_type, "schema_version", 1))
    pattern, written = STREAM_IDS[category]
    return {
        "name": name,
        "title": f"{name} (schema v{version})",
        "summary": (event_type.__doc__ or name).strip().splitlines()[0],
        "contentType": "application/json",
        "headers": _headers_schema(category, event_type, version),
        "payload": {"$ref": f"#/components/schemas/{event_type.__name__}"},
        "correlationId": {"location": "$message.header#/ce_correlationid"},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": f"the stream id `{written}` as UTF-8 bytes; partitioned by "
                    "Kafka's default partitioner (murmur2 of these bytes)",
                    "pattern": pattern,
                    "examples": [example.key.decode()],
                },
                "bindingVersion": KAFKA_BINDING,
            }
        },
        "description": _message_description(name, version, dataschema_base),
        "examples": [_example(example)],
    }


def _channel(category: str, topic: str, refs: dict[str, Any], settings: RelaySettings) -> dict[str, Any]:
    """One category's topic, as the relay creates it."""
    return {
        "address": topic,
        "title": f"{category} events",
        "description": f"Every event of every `{STREAM_IDS[category][1]}` stream, keyed by stream id. "
        "Created by the relay at start-up, before its first event.",
        "messages": refs,
        "bindings": {
            "kafka": {
                "topic": topic,
                "partitions": settings.relay_partitions,
                "replicas": settings.relay_replication_factor,
                "topicConfiguration": {
                    "cleanup.policy": ["delete"],
                    "retention.ms": settings.relay_retention_ms,
                },
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def _operation(category: str, topic: str, refs: dict[str, Any]) -> dict[str, Any]:
    """Reading one category's topic, with a consumer group of the reader's own."""
    return {
        "action": "receive",
        "title": f"Consume {category} events",
        "summary": f"Read {topic} with a consumer group of your own.",
        "channel": {"$ref": f"#/channels/{category}"},
        "messages": [{"$ref": f"#/channels/{category}/messages/{name}"} for name in refs],
        "bindings": {
            "kafka": {
                "groupId": {
                    "type": "string",
                    "description": "your own consumer group; a new group reads the topic from "
                    "the beginning only with auto.offset.reset=earliest",
                },
                "bindingVersion": KAFKA_BINDING,
            }
        },
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
    parser = argparse.ArgumentParser(
        prog="relay-asyncapi",
        description=__doc__.splitlines()[0],
        epilog="It reads no environment variable and connects to no server: the document describes "
        "the relay's default settings.",
    )
    parser.add_argument("--output", type=Path, default=Path("asyncapi.yaml"), help="default: ./asyncapi.yaml")
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
