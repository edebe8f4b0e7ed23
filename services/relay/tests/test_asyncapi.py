"""asyncapi.yaml: generated from the code, valid AsyncAPI 3.0, complete."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from fulfilment.events import ALL_EVENTS, event_name
from relay_service.asyncapi import STREAM_IDS, main, render
from relay_service.envelope import HEADERS
from relay_service.settings import RelaySettings
from relay_service.topics import CHANNELS, contract_topics

ROOT = Path(__file__).resolve().parents[3]
VALIDATOR = ROOT / "tools" / "asyncapi"
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


def test_the_committed_file_is_what_the_code_generates() -> None:
    assert main(["--check", "--output", str(ROOT / "asyncapi.yaml")]) == 0, "run: relay-asyncapi"


def test_drift_is_detected(tmp_path: Path) -> None:
    stale = tmp_path / "asyncapi.yaml"
    stale.write_text((ROOT / "asyncapi.yaml").read_text().replace("OrderPlaced", "OrderPut"))
    assert main(["--check", "--output", str(stale)]) == 1


def test_every_registered_event_has_a_channel() -> None:
    in_channels = {event_name(t) for types in CHANNELS.values() for t in types}
    assert in_channels == {event_name(t) for t in ALL_EVENTS}


def test_the_topics_the_relay_creates_are_the_channels_the_document_declares() -> None:
    document = yaml.safe_load((ROOT / "asyncapi.yaml").read_text())
    declared = {channel["address"] for channel in document["channels"].values()}
    assert contract_topics("fulfilment.") == declared


def test_message_payloads_are_the_schemas_in_the_schemas_folder() -> None:
    document = yaml.safe_load((ROOT / "asyncapi.yaml").read_text())
    for name, message in document["components"]["messages"].items():
        version = message["headers"]["properties"]["ce_schemaversion"]["examples"][0]
        committed = json.loads((ROOT / "schemas" / f"{name}.v{version}.json").read_text())
        component = message["payload"]["$ref"].rsplit("/", 1)[1]
        in_document = json.dumps(document["components"]["schemas"][component], sort_keys=True)
        # The same schema, only its references point into components/schemas instead of $defs.
        in_document = in_document.replace("#/components/schemas/", "#/$defs/")
        assert json.loads(in_document) == committed["$defs"][component], name


def test_every_envelope_header_is_documented() -> None:
    document = yaml.safe_load(
        render(RelaySettings(database_url="postgresql://x/y", kafka_bootstrap_servers="k:1"))
    )
    for message in document["components"]["messages"].values():
        assert set(message["headers"]["properties"]) == set(HEADERS)


def _validator() -> list[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "Node.js and npm are needed to run the official AsyncAPI parser: apt-get install nodejs npm"
        )
    if not (VALIDATOR / "node_modules" / "@asyncapi" / "parser").exists():
        subprocess.run(
            [npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=VALIDATOR, check=True, timeout=300
        )
    return [node, str(VALIDATOR / "validate.mjs")]


def run_parser(path: Path) -> tuple[int, dict[str, object]]:
    result = subprocess.run(
        [*_validator(), str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    return result.returncode, json.loads(result.stdout)


def test_the_official_asyncapi_parser_accepts_the_document() -> None:
    code, report = run_parser(ROOT / "asyncapi.yaml")
    assert code == 0, report
    assert report["version"] == "3.0.0"


def test_the_official_parser_rejects_a_broken_document(tmp_path: Path) -> None:
    # Shows the validation can fail: a channel reference that points nowhere.
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(
        (ROOT / "asyncapi.yaml").read_text().replace("$ref: '#/channels/order'", "$ref: '#/channels/nope'")
    )
    code, report = run_parser(broken)
    assert code == 1
    assert any(d["severity"] == "error" for d in report["diagnostics"])  # type: ignore[attr-defined]


def _document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "asyncapi.yaml").read_text())
    return document


def test_every_message_has_an_example_valid_against_its_own_headers_payload_and_key() -> None:
    document = _document()
    for name, message in document["components"]["messages"].items():
        (example,) = message["examples"]
        jsonschema.validate(example["headers"], message["headers"], format_checker=FORMATS)
        version = example["headers"]["ce_schemaversion"]
        assert example["headers"]["ce_dataschema"].endswith(f"/{name}.v{version}.json")
        schema = json.loads((ROOT / "schemas" / f"{name}.v{version}.json").read_text())
        jsonschema.validate(example["payload"], schema, format_checker=FORMATS)
        key = message["bindings"]["kafka"]["key"]
        assert key["examples"] == [example["headers"]["ce_subject"]]
        jsonschema.validate(key["examples"][0], key)


def test_subjects_and_keys_follow_each_category_not_the_order_one() -> None:
    document = _document()
    for category, channel in document["channels"].items():
        for ref in channel["messages"].values():
            message = document["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
            subject = message["examples"][0]["headers"]["ce_subject"]
            assert subject.startswith(f"{category}-"), (category, subject)
            assert message["bindings"]["kafka"]["key"]["pattern"] == STREAM_IDS[category][0]
    stock = document["components"]["messages"]["StockReceived"]["headers"]
    with pytest.raises(jsonschema.ValidationError):  # an upper-case SKU is never a stream id
        jsonschema.validate({**_example_headers("StockReceived"), "ce_subject": "stock-BLUE-MUG"}, stock)


def _example_headers(name: str) -> dict[str, str]:
    headers: dict[str, str] = _document()["components"]["messages"][name]["examples"][0]["headers"]
    return headers


def test_a_later_schema_version_is_valid_against_the_document() -> None:
    # A consumer validating headers with this document must not reject version 2 when it comes.
    headers_schema = _document()["components"]["messages"]["OrderPlaced"]["headers"]
    for version in ("2", "10"):
        jsonschema.validate({**_example_headers("OrderPlaced"), "ce_schemaversion": version}, headers_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**_example_headers("OrderPlaced"), "ce_schemaversion": "v2"}, headers_schema)


def test_the_document_states_retention_replay_offsets_keys_and_positions() -> None:
    document = _document()
    text = " ".join(document["info"]["description"].split())  # phrases may wrap
    for phrase in (
        "`retention.ms` = 604800000 (7 days)",
        "auto.offset.reset=earliest",
        "before its first event",
        "murmur2",
        "UTF-8 bytes of the stream id",
        "rebuild from the store's global log",
        "publishes the whole log again",
        "Versions are not published side by side",
        "`ce_position`",
    ):
        assert phrase in text, phrase
    for channel in document["channels"].values():
        assert channel["bindings"]["kafka"]["topicConfiguration"]["retention.ms"] == 604_800_000


def test_each_message_is_at_its_types_current_schema_version() -> None:
    messages = _document()["components"]["messages"]
    for event_type in ALL_EVENTS:
        headers = messages[event_name(event_type)]["examples"][0]["headers"]
        assert headers["ce_schemaversion"] == str(event_type.schema_version), event_name(event_type)
    assert _example_headers("ProductRegistered")["ce_schemaversion"] == "2"


def test_the_stock_channel_carries_the_catalogue_events() -> None:
    stock = _document()["channels"]["stock"]["messages"]
    assert {"ProductRegistered", "ProductPriceChanged", "ProductDeactivated", "ProductActivated"} <= set(
        stock
    )


def test_the_document_says_version_1_registrations_are_published_upcast_to_version_2() -> None:
    document = _document()
    message = document["components"]["messages"]["ProductRegistered"]
    text = " ".join(message["description"].split())
    assert "Events stored at v1" in text
    assert "published upcast to v2: `ce_schemaversion` 2" in text
    assert "/schemas/ProductRegistered.v1.json" in text
    assert "`ProductRegistered` (v2; v1 published upcast to v2)" in " ".join(
        document["info"]["description"].split()
    )
    # The payload schema says what an upcast registration holds: no price.
    schema = document["components"]["schemas"]["ProductRegistered"]
    assert {"type": "null"} in schema["properties"]["unit_price"]["anyOf"]
    assert "version 1 event" in schema["description"]
    # A message without earlier versions says nothing of upcasting.
    assert "upcast" not in document["components"]["messages"]["ProductPriceChanged"]["description"]
