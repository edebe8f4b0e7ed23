"""Every command-line entry point of the suite's packages: `--help` works and names what it reads.

The six services' own entry points (and the payment sandbox's, built the same way
by `servicekit.runner`) are covered by their packages' tests; `projector` and
`eventstore` by theirs, with their failure paths. The rest read no server, so
their help says which variables they read, if any.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def scripts() -> dict[str, str]:
    """`[project.scripts]` of every package: name -> entry point."""
    found: dict[str, str] = {}
    for pyproject in sorted([*ROOT.glob("libs/*/pyproject.toml"), *ROOT.glob("services/*/pyproject.toml")]):
        found |= tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {})
    return found


# What each entry point's --help must name: the variables it reads, or that it reads none.
HELP_SAYS = {
    "eventstore": ["DATABASE_URL"],
    "fulfilment-schemas": ["reads no environment variable"],
    "mint-token": ["JWT_SECRET", "JWT_ISSUER", "JWT_AUDIENCE"],
    "projector": ["REDIS_URL", "DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SEARCH_URL"],
    "relay-asyncapi": ["reads no environment variable"],
    "payment-sandbox": ["SANDBOX_SECRET"],
    "command-service": ["DATABASE_URL"],
    "query-service": ["REDIS_URL"],
    "relay-service": ["KAFKA_BOOTSTRAP_SERVERS"],
    "projector-service": ["SEARCH_URL"],
    "saga-service": ["DATABASE_URL"],
}


def test_every_entry_point_is_reviewed_here() -> None:
    assert set(scripts()) == set(HELP_SAYS)


@pytest.mark.parametrize("name", sorted(HELP_SAYS))
def test_help_works_and_names_what_it_reads(name: str) -> None:
    result = subprocess.run(
        [str(BIN / name), "--help"],
        env={"PATH": os.environ.get("PATH", "")},  # no variable set: help must not need any
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    for words in HELP_SAYS[name]:
        assert words in result.stdout, f"{name} --help does not mention {words!r}"


def test_mint_token_says_in_one_line_that_it_cannot_sign_with_a_key(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not a key\n")

    result = subprocess.run(
        [str(BIN / "mint-token"), "--subject", "a", "--role", "staff", "--issuer", "i", "--audience", "a",
         "--private-key", str(key)],
        env={"PATH": os.environ.get("PATH", "")}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stderr.startswith("mint-token: cannot sign RS256 with that key")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
