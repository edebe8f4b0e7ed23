"""An external consumer of the fulfilment events, written from asyncapi.yaml alone.

It needs nothing from this repository: only `aiokafka`, the topic names, and the
envelope described in asyncapi.yaml (CloudEvents 1.0, Kafka binary mode).

    python examples/print_events.py --group my-team --topics fulfilment.order fulfilment.stock

It joins its own consumer group, so it receives every event regardless of other
consumers; it deduplicates redeliveries the way asyncapi.yaml recommends (keep the
last applied `ce_streamversion` per `ce_subject`) and commits offsets only after
printing, so a crash re-reads rather than loses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal

from aiokafka import AIOKafkaConsumer


def headers_of(record: object) -> dict[str, str]:
    return {name: value.decode() for name, value in getattr(record, "headers", ())}


async def run(bootstrap: str, group: str, topics: list[str], from_beginning: bool) -> None:
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    last_version: dict[str, int] = {}  # per stream; a real consumer keeps this with its own state
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    ce = headers_of(record)
                    stream, version = ce["ce_subject"], int(ce["ce_streamversion"])
                    if version <= last_version.get(stream, -1):
                        continue  # a redelivery: already applied
                    last_version[stream] = version
                    payload = json.loads(record.value)
                    print(
                        f"{ce['ce_time']} {ce['ce_type']:<26} {stream}@{version} "
                        f"(schema v{ce['ce_schemaversion']}) {json.dumps(payload, sort_keys=True)}",
                        flush=True,
                    )
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Print fulfilment events from Kafka.")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092"))
    parser.add_argument("--group", default="example-printer")
    parser.add_argument(
        "--topics", nargs="+", default=["fulfilment.order", "fulfilment.stock", "fulfilment.payment"]
    )
    parser.add_argument("--from-beginning", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.bootstrap, args.group, args.topics, args.from_beginning))


if __name__ == "__main__":
    main()
