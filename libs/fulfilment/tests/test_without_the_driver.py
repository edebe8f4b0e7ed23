"""The domain loads without the database driver: its deciders and registry need only the store's core."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_domain_does_not_import_asyncpg() -> None:
    code = (
        "import fulfilment, fulfilment.deciders, fulfilment.registry, fulfilment.records, sys; "
        "assert 'asyncpg' not in sys.modules, 'asyncpg was imported'"
    )

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr
