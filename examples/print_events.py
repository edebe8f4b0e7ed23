"""An external consumer of the fulfilment events, written from asyncapi.yaml alone.

It needs nothing from this repository: only `aiokafka`, the topic names, and the
envelope described in asyncapi.yaml (CloudEvents 1.0, Kafka binary mode).

    python examples/print_events.py --from-beginning        # every event so far, then exit
    python examples/print_events.py --group my-team --follow  # what is new since my last run, and on

It prints what the topics hold up to the moment it started, then exits; with
`--follow` it goes on until Ctrl-C. `--from-beginning` reads every partition from
its first offset, whatever was read before, and joins no consumer group. With
`--group` it resumes where that group last committed, committing only after
printing, so a crash re-reads rather than loses. Redeliveries are skipped the way
asyncapi.yaml recommends (keep the last applied `ce_streamversion` per
`ce_subject`); a record it cannot read is reported on stderr and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


def headers_of(record: Any) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers or ()}


def describe(record: Any, last_version: dict[str, int]) -> str | None:
    """The line to print for `record`, or None for a redelivery; raises ValueError if unreadable."""
    try:
        ce = headers_of(record)
        stream, version = ce["ce_subject"], int(ce["ce_streamversion"])
        payload = json.loads(record.value)
        kind, schema, at = ce["ce_type"], ce["ce_schemaversion"], ce["ce_time"]
    except (KeyError, ValueError, TypeError) as error:  # UnicodeDecodeError and JSONDecodeError included
        raise ValueError(f"{type(error).__name__}: {error}") from error
    if version <= last_version.get(stream, -1):
        return None  # a redelivery: already applied
    last_version[stream] = version
    return f"{at} {kind:<26} {stream}@{version} (schema v{schema}) {json.dumps(payload, sort_keys=True)}"


async def caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True


async def run(
    bootstrap: str, group: str | None, topics: list[str], from_beginning: bool, follow: bool
) -> int:
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None if from_beginning else group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    committing = not from_beginning and group is not None
    last_version: dict[str, int] = {}  # per stream; a real consumer keeps this with its own state
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await consumer.start()
    try:
        try:
            async with asyncio.timeout(30):
                while not (partitions := consumer.assignment()):  # noqa: ASYNC110  # joined, or all partitions
                    await asyncio.sleep(0.1)
        except TimeoutError:
            print(f"no partition of {' '.join(topics)} within 30 s: do the topics exist?", file=sys.stderr)
            return 1
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        # What the topics hold now: without --follow, the run ends once it has read up to here.
        ends = await consumer.end_offsets(partitions)
        while not stop.is_set():
            if not follow and await caught_up(consumer, ends):
                break
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    try:
                        line = describe(record, last_version)
                    except ValueError as error:
                        where = f"{record.topic}/{record.partition}@{record.offset}"
                        print(f"skipped an unreadable record at {where}: {error}", file=sys.stderr)
                        continue
                    if line is not None:
                        print(line, flush=True)
            if batches and committing:
                await consumer.commit()
    finally:
        await consumer.stop()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description="Print fulfilment events from Kafka, then exit.")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092"))
    parser.add_argument("--group", default="example-printer", help="the consumer group to resume")
    parser.add_argument(
        "--topics", nargs="+", default=["fulfilment.order", "fulfilment.stock", "fulfilment.payment"]
    )
    parser.add_argument("--from-beginning", action="store_true", help="read every partition from its start")
    parser.add_argument("--follow", action="store_true", help="keep printing new events until Ctrl-C")
    args = parser.parse_args()
    raise SystemExit(
        asyncio.run(run(args.bootstrap, args.group, args.topics, args.from_beginning, args.follow))
    )


if __name__ == "__main__":
    main()
