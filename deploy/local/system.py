"""Debian packages and the unprivileged user that the servers run as."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from deploy.local.components import run_checked

__all__ = ["apt_install", "as_service_user", "chown_tree", "service_user"]

_apt_updated = False


def apt_install(*packages: str) -> None:
    """Install Debian packages when running as root; otherwise say what to install."""
    global _apt_updated
    if os.geteuid() != 0:
        raise RuntimeError(
            f"missing system packages; install them with: sudo apt-get install -y {' '.join(packages)}"
        )
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        run_checked(["apt-get", "update", "-qq"], env=env)
        _apt_updated = True
    run_checked(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env)


def service_user() -> str | None:
    """The user that servers refusing root (PostgreSQL, OpenSearch) run as; None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        run_checked(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"])
    return "postgres"


def as_service_user(argv: list[str]) -> list[str]:
    """Prefix argv so it runs as the service user.

    setpriv execs the target in place, so the PID the stack records is the
    server itself and `down` stops exactly it.
    """
    user = service_user()
    if user is None:
        return argv
    setpriv = shutil.which("setpriv") or "setpriv"
    return [setpriv, f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv]


def chown_tree(path: Path) -> None:
    """Hand a data directory to the service user, and let it traverse the parents."""
    user = service_user()
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for parent in reversed(path.parents):
        if parent == Path("/"):
            continue
        mode = parent.stat().st_mode
        if not mode & 0o001:  # others cannot traverse: the server could not reach its data
            parent.chmod(mode | 0o001)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)
