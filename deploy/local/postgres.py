"""PostgreSQL from the Debian package, in a cluster of its own under the stack folder."""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from deploy.local.components import Component, Launch, Layout, run_checked
from deploy.local.system import apt_install, as_service_user, chown_tree

__all__ = ["component"]

USER = "suite"
PASSWORD = "suite"  # noqa: S105 - a local development cluster on loopback
DATABASE = "suite"


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        return Path(
            subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        )
    return None


def _require_bindir() -> Path:
    bindir = _bindir()
    if bindir is None:
        apt_install("postgresql")
        bindir = _bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed and could not be installed")
    return bindir


def component(host: str = "127.0.0.1", port: int = 55432) -> Component:
    url = f"postgresql://{USER}:{PASSWORD}@{host}:{port}/{DATABASE}"

    def prepare(layout: Layout) -> None:
        bindir = _require_bindir()
        data = layout.data("postgres")
        if (data / "PG_VERSION").exists():
            return
        data.mkdir(parents=True, exist_ok=True)
        (layout.root / "run" / "postgres").mkdir(parents=True, exist_ok=True)
        chown_tree(layout.root / "run" / "postgres")
        chown_tree(data)
        pwfile = data.parent / "postgres.pw"
        pwfile.write_text(PASSWORD + "\n")
        chown_tree(pwfile)
        run_checked(
            as_service_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    USER,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        )
        pwfile.unlink()
        # Tuned for a 2-core, 24 GiB machine that also runs Kafka and OpenSearch;
        # durability settings stay at their defaults so benchmarks stay honest.
        (data / "postgresql.auto.conf").write_text(
            "\n".join(
                [
                    "max_connections = 300",
                    "shared_buffers = '512MB'",
                    "effective_cache_size = '2GB'",
                    "wal_buffers = '16MB'",
                    "max_wal_size = '2GB'",
                    "log_min_messages = 'warning'",
                    "log_min_duration_statement = -1",
                    # A transaction left open holds back the event log's horizon for
                    # every subscriber; end forgotten ones instead of stalling the suite.
                    "idle_in_transaction_session_timeout = '60s'",
                    "",
                ]
            )
        )

    def launch(layout: Layout) -> Launch:
        bindir = _require_bindir()
        sockets = layout.root / "run" / "postgres"
        return Launch(
            argv=as_service_user(
                [
                    str(bindir / "postgres"),
                    "-D",
                    str(layout.data("postgres")),
                    "-p",
                    str(port),
                    "-c",
                    f"listen_addresses={host}",
                    "-c",
                    f"unix_socket_directories={sockets}",
                ]
            )
        )

    def create_database(layout: Layout) -> None:
        bindir = _require_bindir()
        psql = [
            str(bindir / "psql"),
            "-h",
            str(layout.root / "run" / "postgres"),
            "-p",
            str(port),
            "-U",
            USER,
        ]
        exists = run_checked(
            [*psql, "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"]
        )
        if exists.strip() != "1":
            run_checked([*psql, "-d", "postgres", "-c", f"CREATE DATABASE {DATABASE}"])

    def ready(probe_url: str) -> bool:
        bindir = _bindir()
        if bindir is None:
            return False
        parts = urlsplit(probe_url)
        result = subprocess.run(
            [str(bindir / "pg_isready"), "-q", "-h", parts.hostname or host, "-p", str(parts.port or 5432)],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    return Component(
        name="postgres",
        env_var="DATABASE_URL",
        url=url,
        prepare=prepare,
        launch=launch,
        is_ready=ready,
        start_timeout=60.0,
        after_ready=create_database,
    )
