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
    assert {"ProductRegistered.v1.json", "ProductRegistered.v2.json"} <= names
    assert "OrderPlaced.v1.json" in names


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
