"""FastStream's default parsing fails on records our consumers must see; `raw_parser`/`raw_decoder` do not."""

from __future__ import annotations

import json

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka.message import KafkaMessage
from faststream.kafka.parser import AioKafkaBatchParser, AioKafkaParser
from servicekit.kafka import fetch_problem, raw_decoder, raw_parser

HEADERS = [("ce_subject", b"\xff\xfeorder"), ("content-type", b"application/json")]


def record(offset: int = 7) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="fulfilment.order", partition=0, offset=offset, timestamp=0, timestamp_type=0,
        key=b"order-1", value=b"<html>not json</html>", checksum=None,
        serialized_key_size=7, serialized_value_size=21, headers=HEADERS,
    )  # fmt: skip


async def test_faststreams_defaults_fail_on_a_bad_header_and_on_a_non_json_value_labelled_json() -> None:
    parser = AioKafkaParser(KafkaMessage, None)
    with pytest.raises(UnicodeDecodeError):
        await parser.parse_message(record())
    clean = record()
    clean.headers = [("content-type", b"application/json")]
    with pytest.raises(json.JSONDecodeError):
        await parser.decode_message(await parser.parse_message(clean))


async def test_the_raw_parser_and_decoder_hand_over_the_untouched_record_and_its_bytes() -> None:
    original = record()
    message = await raw_parser(original, AioKafkaParser(KafkaMessage, None).parse_message)
    assert message.raw_message is original
    assert original.headers == HEADERS  # the record itself is not changed
    assert raw_decoder(message) == b"<html>not json</html>"


async def test_a_batch_is_handed_over_untouched_too() -> None:
    batch = (record(7), record(8))
    message = await raw_parser(batch, AioKafkaBatchParser(KafkaMessage, None).parse_batch)
    assert message.raw_message is batch
    assert raw_decoder(message) == [b"<html>not json</html>"] * 2


async def test_a_consumer_that_is_not_started_cannot_fetch() -> None:
    assert await fetch_problem(None) == "the consumer is not started"
