"""Schema evolution: additive changes keep the version, breaking ones are caught."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import msgspec
import pytest
from fulfilment.compatibility import breaking_changes, unversioned_breaking_changes
from fulfilment.schemas import schema_documents

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def schema(cls: type[msgspec.Struct]) -> dict[str, object]:
    return json.loads(json.dumps(msgspec.json.schema(cls)))


class Line(msgspec.Struct, frozen=True):
    sku: str
    quantity: Annotated[int, msgspec.Meta(ge=1)]


class V1(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    note: str | None = None
    lines: list[Line]


def evolved(**fields: object) -> type[msgspec.Struct]:
    """A class named like V1 (so $defs line up) with other fields."""
    specs = [(name, *spec) if isinstance(spec, tuple) else (name, spec) for name, spec in fields.items()]
    return msgspec.defstruct("V1", specs, frozen=True, kw_only=True)  # type: ignore[arg-type]


def test_adding_an_optional_field_is_additive() -> None:
    new = evolved(order_id=str, note=(str | None, None), lines=list[Line], channel=(str, "web"))
    assert breaking_changes(schema(V1), schema(new)) == []


def test_removing_an_optional_field_is_additive() -> None:
    new = evolved(order_id=str, lines=list[Line])
    assert breaking_changes(schema(V1), schema(new)) == []


def test_a_new_required_field_is_breaking() -> None:
    new = evolved(order_id=str, note=(str | None, None), lines=list[Line], channel=str)
    assert breaking_changes(schema(V1), schema(new)) == [
        "$.channel: newly required (stored events of this version lack it)"
    ]


def test_removing_a_required_field_is_breaking() -> None:
    new = evolved(note=(str | None, None), lines=list[Line])
    assert breaking_changes(schema(V1), schema(new)) == ["$.order_id: required field removed"]


def test_changing_a_type_is_breaking() -> None:
    new = evolved(order_id=int, note=(str | None, None), lines=list[Line])
    assert breaking_changes(schema(V1), schema(new)) == [
        "$.order_id: type changed from 'string' to 'integer'"
    ]


def test_a_changed_constraint_inside_a_nested_struct_is_breaking() -> None:
    class Line(msgspec.Struct, frozen=True):  # same name, wider bound
        sku: str
        quantity: Annotated[int, msgspec.Meta(ge=0)]

    new = evolved(order_id=str, note=(str | None, None), lines=list[Line])
    assert breaking_changes(schema(V1), schema(new)) == ["$.lines[].quantity: minimum changed from 1 to 0"]


def test_descriptions_may_change_freely() -> None:
    old = schema(V1)
    new = json.loads(
        json.dumps(old).replace('"type": "object"', '"type": "object", "description": "now documented"')
    )
    assert breaking_changes(old, new) == []


def test_the_committed_schemas_have_no_unversioned_breaking_change() -> None:
    assert unversioned_breaking_changes(SCHEMAS, schema_documents()) == []


def test_a_breaking_edit_to_a_committed_schema_is_reported(tmp_path: Path) -> None:
    name = "OrderPlaced.v1.json"
    committed = json.loads((SCHEMAS / name).read_text())
    committed["$defs"]["OrderPlaced"]["required"].append("coupon")  # as if v1 had a field the code dropped
    (tmp_path / name).write_text(json.dumps(committed))
    problems = unversioned_breaking_changes(tmp_path, schema_documents())
    assert problems == ["OrderPlaced.v1.json: $.coupon: required field removed"]


@pytest.mark.parametrize("field", ["order_id", "lines"])
def test_every_required_field_of_v1_is_guarded(field: str) -> None:
    new = evolved(**{k: v for k, v in {"order_id": str, "lines": list[Line]}.items() if k != field})
    assert breaking_changes(schema(V1), schema(new)) == [f"$.{field}: required field removed"]


def test_the_schemas_command_names_a_breaking_change_and_the_way_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fulfilment.schemas import main, write

    write(tmp_path)
    path = tmp_path / "OrderPlaced.v1.json"
    committed = json.loads(path.read_text())
    committed["$defs"]["OrderPlaced"]["properties"]["currency"]["pattern"] = "^[A-Z]{2}$"
    path.write_text(json.dumps(committed))
    assert main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert (
        "breaking change without a new schema version: OrderPlaced.v1.json: $.currency: pattern changed"
        in err
    )
    assert "register an upcaster" in err
