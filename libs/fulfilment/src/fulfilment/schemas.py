"""JSON Schemas of the events, generated from the Structs into `schemas/`.

The committed files are the contract for consumers in any language (the AsyncAPI
document points at them), so they are generated, never edited: `fulfilment-schemas`
writes one file per event type and schema version, and `fulfilment-schemas --check`
(run by a test) fails when the files on disk differ from what the code generates.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from fulfilment.compatibility import unversioned_breaking_changes
from fulfilment.events import ALL_EVENTS, Event, event_name
from fulfilment.superseded import SUPERSEDED_EVENTS

__all__ = ["check", "file_name", "main", "schema_documents", "write"]

_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_SCHEMA_FILE = re.compile(r"^[A-Za-z][A-Za-z0-9]*\.v\d+\.json$")


def file_name(event_type: type[Event]) -> str:
    """`<EventName>.v<N>.json`: one file per event type and schema version."""
    return f"{event_name(event_type)}.v{event_type.schema_version}.json"


def schema_documents(
    event_types: Sequence[type[Event]] = (*ALL_EVENTS, *SUPERSEDED_EVENTS),
) -> dict[str, str]:
    """The text of every schema file, by file name: each current version, and the versions before."""
    documents: dict[str, str] = {}
    for event_type in event_types:
        schema = msgspec.json.schema(event_type)
        document = {
            "$schema": _DIALECT,
            "$id": file_name(event_type),
            "x-event-name": event_name(event_type),
            "x-schema-version": event_type.schema_version,
            **schema,
        }
        documents[file_name(event_type)] = json.dumps(document, indent=2, sort_keys=True) + "\n"
    return documents


def write(directory: Path) -> list[str]:
    """Write every schema file into `directory`; returns the names of files that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in schema_documents().items():
        path = directory / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed.append(name)
    return changed


def check(directory: Path) -> list[str]:
    """What differs between `directory` and the generated schemas, one line per file; empty when in sync.

    A breaking change under an unchanged schema version is reported as such first:
    regenerating would hide it, so the fix is a new version plus an upcaster.
    """
    expected = schema_documents()
    problems = [
        f"breaking change without a new schema version: {line}"
        for line in unversioned_breaking_changes(directory, expected)
    ]
    for name, text in expected.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"missing: {name}")
        elif path.read_text() != text:
            problems.append(f"differs from the code: {name}")
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if _SCHEMA_FILE.match(path.name) and path.name not in expected:
                problems.append(f"no event type generates it: {path.name}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `fulfilment-schemas [--check] [DIRECTORY]`."""
    parser = argparse.ArgumentParser(
        prog="fulfilment-schemas",
        description=__doc__.splitlines()[0],
        epilog="It reads no environment variable and connects to no server.",
    )
    parser.add_argument("directory", nargs="?", default="schemas", type=Path, help="default: ./schemas")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the files drifted")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.directory)
        for line in problems:
            print(line, file=sys.stderr)
        if any(line.startswith("breaking") for line in problems):
            print(
                "keep the old class for the old version, give the new one the next schema_version "
                "and register an upcaster (docs/event-store.md, Upcasting)",
                file=sys.stderr,
            )
        elif problems:
            print("run `fulfilment-schemas` to regenerate them", file=sys.stderr)
        return 1 if problems else 0
    for name in write(args.directory):
        print(f"wrote {args.directory / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
