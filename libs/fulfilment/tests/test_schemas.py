from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import msgspec
from fulfilment.events import ALL_EVENTS, OrderPlaced, event_name
from fulfilment.schemas import check, main, schema_documents
from fulfilment.superseded import SUPERSEDED_EVENTS

COMMITTED = Path(__file__).resolve().parents[3] / "schemas"


def test_the_committed_schemas_match_the_code() -> None:
    problems = check(COMMITTED)

    assert problems == [], "schemas/ drifted from the event Structs: run `fulfilment-schemas schemas`"


def test_there_is_one_schema_file_per_event_type_and_version() -> None:
    names = set(schema_documents())

    assert len(names) == len(ALL_EVENTS) + len(SUPERSEDED_EVENTS)
    assert {"OrderPlaced.v1.json", "ProductRegistered.v1.json", "ProductRegistered.v2.json"} <= names


def test_the_check_passes_on_the_committed_folder() -> None:
    assert main(["--check", str(COMMITTED)]) == 0


def test_the_version_1_registration_schema_is_still_generated_as_it_was_published() -> None:
    # Consumers may still hold it: the v1 file keeps its fields, its title and its description.
    text = schema_documents()["ProductRegistered.v1.json"]
    document = json.loads(text)
    definition = document["$defs"]["ProductRegistered"]

    assert text == (COMMITTED / "ProductRegistered.v1.json").read_text()
    assert (document["$id"], document["x-schema-version"]) == ("ProductRegistered.v1.json", 1)
    assert definition["required"] == ["type", "sku", "name"]
    assert set(definition["properties"]) == {"type", "sku", "name"}
    assert definition["description"] == "A SKU became known; it starts with no stock."


def test_the_version_2_registration_schema_requires_a_price_that_may_be_null() -> None:
    definition = json.loads(schema_documents()["ProductRegistered.v2.json"])["$defs"]["ProductRegistered"]

    assert definition["required"] == ["type", "sku", "name", "unit_price", "currency"]
    assert {"type": "null"} in definition["properties"]["unit_price"]["anyOf"]
    assert {"type": "null"} in definition["properties"]["currency"]["anyOf"]


def test_check_reports_a_changed_missing_or_stray_file(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    placed = tmp_path / "OrderPlaced.v1.json"
    placed.write_text(placed.read_text().replace('"title": "OrderPlaced"', '"title": "Edited by hand"'))
    (tmp_path / "OrderConfirmed.v1.json").unlink()
    (tmp_path / "OrderShipped.v1.json").write_text("{}\n")

    assert sorted(check(tmp_path)) == [
        "differs from the code: OrderPlaced.v1.json",
        "missing: OrderConfirmed.v1.json",
        "no event type generates it: OrderShipped.v1.json",
    ]
    assert main(["--check", str(tmp_path)]) == 1


def test_an_encoded_event_carries_its_name_as_type_and_names_required_fields_in_its_schema() -> None:
    document = json.loads(schema_documents()["OrderPlaced.v1.json"])
    definition = document["$defs"]["OrderPlaced"]
    event = msgspec.json.decode(
        msgspec.json.encode(
            OrderPlaced(
                order_id=UUID(int=1),
                customer_id="a",
                lines=(),
                currency="EUR",
                total=0,
            )
        )
    )

    assert event["type"] == event_name(OrderPlaced)
    assert set(definition["required"]) == {"type", "order_id", "customer_id", "lines", "currency", "total"}
    assert document["x-schema-version"] == 1
