"""asyncapi.yaml: generated from the code, valid AsyncAPI 3.0, complete."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from fulfilment.events import ALL_EVENTS, event_name
from relay_service.asyncapi import main, render
from relay_service.envelope import HEADERS
from relay_service.settings import RelaySettings
from relay_service.topics import CHANNELS, contract_topics

ROOT = Path(__file__).resolve().parents[3]
VALIDATOR = ROOT / "tools" / "asyncapi"


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
        version = message["headers"]["properties"]["ce_schemaversion"]["const"]
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
