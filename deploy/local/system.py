"""Debian packages and the unprivileged users that the servers run as."""

from __future__ import annotations

import os
import pwd
import shutil
import threading
from pathlib import Path

from deploy.local.components import run_checked

__all__ = [
    "apt_install",
    "as_service_user",
    "chown_tree",
    "debian_binary",
    "drop_root",
    "java_binary",
    "own_data_dir",
    "service_user",
    "user_namespaces_work",
]

_apt_updated = False
# Components prepare side by side; apt takes one install at a time.
_apt_lock = threading.Lock()


def apt_install(*packages: str) -> None:
    """Install Debian packages when running as root; otherwise say what to install."""
    global _apt_updated
    if os.geteuid() != 0:
        raise RuntimeError(
            f"missing system packages; install them with: sudo apt-get install -y {' '.join(packages)}"
        )
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    with _apt_lock:
        if not _apt_updated:
            run_checked(["apt-get", "update", "-qq"], env=env)
            _apt_updated = True
        run_checked(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env)


def debian_binary(binary: str, package: str) -> str:
    """The path of `binary` (on the PATH or in /usr/bin), installing Debian's `package` when it is missing."""
    found = shutil.which(binary) or shutil.which(binary, path="/usr/bin")
    if found is None:
        apt_install(package)
        found = shutil.which(binary, path="/usr/bin:/usr/local/bin")
    if found is None:
        raise RuntimeError(f"{binary} is missing and could not be installed: apt-get install {package}")
    return found


def java_binary() -> str:
    """The `java` of JAVA_HOME, else whichever is on the PATH (Kafka and Zipkin run on Java 17)."""
    java_home = os.environ.get("JAVA_HOME")
    return str(Path(java_home) / "bin" / "java") if java_home else "java"


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


# --- JVM servers that refuse root (OpenSearch, Elasticsearch) ------------------------
# Both exit when their effective uid is 0 and have no override. Two ways out,
# both exec the JVM (PID kept, so stopping the recorded PID stops the node):
#   1. `unshare --user` without an id mapping: inside the new user namespace the
#      JVM sees uid 65534, while the kernel still checks file access as the real
#      root owner. No user to create, no chown, and it works under a 0700 /root.
#   2. where user namespaces are off (e.g. a container's seccomp profile): setpriv
#      to a dedicated system user that owns the data dir.


def user_namespaces_work() -> bool:
    """True when `unshare --user` can start a process here."""
    try:
        run_checked(["unshare", "--user", "--", "true"])
    except (RuntimeError, OSError):
        return False
    return True


def drop_root(fallback_user: str, *, map_user: bool = False) -> list[str]:
    """argv prefix that starts a server as a non-root user, or nothing when not root.

    With `map_user`, root is mapped to an ordinary uid inside the namespace, so
    files the server creates are owned by the uid it runs as. Elasticsearch 9
    needs that: it loads its entitlement agent through the JVM attach API, whose
    socket handshake fails when the process's uid has no mapping.
    """
    if os.geteuid() != 0:
        return []
    if user_namespaces_work():
        return ["unshare", "--user", *(["--map-user=1000", "--map-group=1000"] if map_user else []), "--"]
    return ["setpriv", f"--reuid={fallback_user}", f"--regid={fallback_user}", "--init-groups", "--"]


def own_data_dir(name: str, fallback_user: str, home: Path, data: Path, probe: Path) -> None:
    """As root, give `data` to whoever `drop_root` will run the server as, and check it can work.

    `probe` is a file under `home` the server must read; a folder above the
    stack root without o+x fails here with a clear message instead of with a
    Java stack trace at start.
    """
    if os.geteuid() != 0:
        return
    if user_namespaces_work():
        run_checked(["chown", "-R", "root:", str(data)])  # files a former setpriv-route run left behind
        return
    try:
        pwd.getpwnam(fallback_user)
    except KeyError:
        run_checked(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", fallback_user]
        )  # fmt: skip
    run_checked(["chown", "-R", f"{fallback_user}:", str(data)])
    try:
        run_checked([*drop_root(fallback_user), "test", "-r", str(probe), "-a", "-w", str(data)])
    except RuntimeError as error:
        raise RuntimeError(
            f"{name}: user {fallback_user!r} cannot read {home} or write {data}; "
            "every folder above the stack root needs o+x (e.g. not under a 0700 /root)"
        ) from error
