"""Apache Kafka 4 for the local stack: one KRaft node (broker + controller) run from its jars.

Kafka publishes no server tarball on Maven Central, but its broker is an ordinary
artifact (`org.apache.kafka:kafka_2.13`), so Maven gathers it with its runtime
closure into one folder and `java -cp <folder>/* kafka.Kafka` runs it: no
download site, no shell scripts, no Docker. The versions live in
`kafka/pom.xml`, the logging set-up in `kafka/log4j2.properties`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import shutil
import socket
import struct
import uuid
from pathlib import Path

from deploy.local.components import Component, Launch, Layout, run_checked
from deploy.local.system import apt_install, java_binary

__all__ = ["component"]

_SUPPORT = Path(__file__).with_name("kafka")
_POM = _SUPPORT / "pom.xml"
_LOG4J2 = _SUPPORT / "log4j2.properties"

# The server's JVM shares two cores with PostgreSQL, Redis and OpenSearch. G1
# with a short pause goal is what Kafka's own start script uses.
_SERVER_JVM = [
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    # A broker limping on after an OutOfMemoryError is worse than one that is
    # visibly down: the stack reports it and `up` starts it again.
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]
_TOOL_JVM = ["-Xmx256m"]

_API_VERSIONS = 18
_METADATA = 3
_METADATA_VERSION = 4  # Kafka 4 dropped Metadata v0-v3 (KIP-896); v4 is the oldest left.
_CLIENT_ID = b"local-stack-probe"


def component(host: str = "127.0.0.1", port: int = 59092, controller_port: int = 59093) -> Component:
    """The Kafka broker, serving PLAINTEXT clients on host:port."""

    def prepare(layout: Layout) -> None:
        _ensure_tools()
        _fetch_jars(layout)
        data = layout.data("kafka")
        data.mkdir(parents=True, exist_ok=True)
        # Rewritten every time so that changed ports take effect on the next start
        # (the lone controller re-elects itself at its new address).
        config = data / "server.properties"
        config.write_text(_server_properties(host, port, controller_port, _log_dir(layout)), encoding="utf-8")
        if not (_log_dir(layout) / "meta.properties").exists():
            # --standalone: this node becomes the single voter of a dynamic quorum.
            format_args = ["format", "--standalone", "-t", _cluster_id(), "-c", str(config)]
            run_checked(_java(layout, _TOOL_JVM, "kafka.tools.StorageTool", *format_args), cwd=data)

    def launch(layout: Layout) -> Launch:
        data = layout.data("kafka")
        # The JVM is the child process itself, so the PID the stack records is Kafka's:
        # SIGTERM on it runs Kafka's controlled shutdown.
        argv = _java(layout, _SERVER_JVM, "kafka.Kafka", str(data / "server.properties"))
        # cwd: crash dumps (hs_err_pid*.log) land beside the data, not in the repo.
        return Launch(argv=argv, cwd=data)

    return Component(
        name="kafka",
        env_var="KAFKA_BOOTSTRAP_SERVERS",
        url=f"{host}:{port}",
        prepare=prepare,
        launch=launch,
        is_ready=is_ready,
        # Ready in ~2.5-5 s on an idle two-core machine. After an unclean stop
        # (SIGKILL, crash) registration waits out the old broker session
        # (broker.session.timeout.ms, 9 s): ~13 s. And `up` boots OpenSearch alongside.
        # A data directory with thousands of partitions (topics tests left; `./dev test` prunes
        # them) takes minutes of log recovery: measured over 90 s for 8,800 partitions.
        start_timeout=300.0,
    )


def is_ready(url: str) -> bool:
    """True once a Kafka broker at url answers requests and is usable.

    Speaking the protocol, rather than only connecting, keeps the stack from
    taking some other server on the port (or a configured url) for Kafka. The
    Metadata call checks what creating a topic needs, an unfenced broker (the
    response lists only those); with none, creation fails with "0 broker(s) are
    registered". Kafka 4.4 opens its client port only once it is unfenced (measured),
    so today this agrees with ApiVersions; it guards against that order changing.
    """
    host, _, port = url.split(",")[0].rpartition(":")  # a configured url may list several brokers
    try:
        with socket.create_connection((host, int(port)), timeout=2.0) as sock:
            sock.settimeout(2.0)
            (error_code,) = struct.unpack_from(">h", _call(sock, _API_VERSIONS, 0, 1))
            if error_code != 0:
                return False
            # Body: an empty (not null) topic list, so nothing is listed or auto-created.
            metadata = _call(sock, _METADATA, _METADATA_VERSION, 2, struct.pack(">i?", 0, False))
            (broker_count,) = struct.unpack_from(">i", metadata, 4)  # after throttle_time_ms
            return int(broker_count) > 0
    except (OSError, ValueError, struct.error):
        return False


def _call(sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes = b"") -> bytes:
    """One request/response in Kafka's wire format (v1 request header, v0 response header)."""
    request = struct.pack(">hhih", api_key, version, correlation_id, len(_CLIENT_ID)) + _CLIENT_ID + body
    sock.sendall(struct.pack(">i", len(request)) + request)
    (size,) = struct.unpack(">i", _read(sock, 4))
    response = _read(sock, size)
    if struct.unpack_from(">i", response)[0] != correlation_id:
        raise ValueError("response to another request")
    return response[4:]


def _read(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        chunks += chunk
    return bytes(chunks)


def _ensure_tools() -> None:
    """Maven fetches the jars and Java runs them (Kafka 4 brokers need Java 17+)."""
    missing = []
    if shutil.which(java_binary()) is None:
        missing.append("openjdk-17-jre-headless")
    if shutil.which("mvn") is None:
        missing.append("maven")
    if missing:
        apt_install(*missing)


def _fetch_jars(layout: Layout) -> None:
    """Copy kafka_2.13 and its runtime dependencies into the cache, once per pom.xml."""
    cache = layout.cache("kafka")
    lib = cache / "lib"
    marker = cache / "pom.sha256"
    wanted = hashlib.sha256(_POM.read_bytes()).hexdigest()
    if marker.exists() and marker.read_text(encoding="utf-8").strip() == wanted:
        return
    # Start clean: jars of an older version left beside the new ones would both
    # end up on the wildcard classpath.
    shutil.rmtree(lib, ignore_errors=True)
    run_checked(
        [
            "mvn",
            "-B",
            "-q",
            "-Dstyle.color=never",
            "-f",
            str(_POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={lib}",
        ]
    )
    marker.write_text(wanted + "\n", encoding="utf-8")


def _java(layout: Layout, jvm_options: list[str], main: str, *args: str) -> list[str]:
    logging = f"-Dlog4j2.configurationFile={_LOG4J2}"
    classpath = str(layout.cache("kafka") / "lib" / "*")  # expanded by the JVM, not a shell
    return [java_binary(), *jvm_options, logging, "-cp", classpath, main, *args]


def _log_dir(layout: Layout) -> Path:
    """Kafka's own "log" directory: the partitions' data and the KRaft metadata log."""
    return layout.data("kafka") / "log-dir"


def _cluster_id() -> str:
    """A fresh id in Kafka's Uuid text form (url-safe base64 of 16 bytes, unpadded)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):  # Kafka never issues these: they read as a command-line flag
            return text


def _server_properties(host: str, port: int, controller_port: int, log_dir: Path) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # Dynamic quorum (KIP-853), as in Kafka's own quickstart: `format --standalone`
        # makes this node the only voter, so no voter list is configured.
        "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        # Topics are created explicitly by the services; a typo must fail, not
        # silently create a new topic.
        "auto.create.topics.enable": "false",
        "num.partitions": "3",
        "default.replication.factor": "1",
        # Internal topics default to 3 replicas / min ISR 2, impossible on one node.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # The 3 s default lets a big consumer group gather before its first
        # rebalance; here it would only delay every test's first poll.
        "group.initial.rebalance.delay.ms": "0",
        # Sized for two shared cores rather than a dedicated broker.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "background.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "group.coordinator.threads": "2",
        # The log cleaner allocates this on the heap up front (128 MiB by default),
        # a sixth of the 768 MiB heap; the compacted topics here are tiny.
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
    }
    return "# Written by deploy/local/kafka.py on every prepare; edits are lost.\n" + "".join(
        f"{key}={value}\n" for key, value in settings.items()
    )


# A topic a test made: its first part ends in eight hex digits, the random part of the test's prefix
# (`suite1a2b3c4d.order`, `e2e08000081.stock`); the stack's own (`fulfilment.order`) never do.
_TEST_TOPIC = re.compile(r"^[a-z0-9_-]*[0-9a-f]{8}[.-]")


def prune_test_topics(url: str) -> int:
    """Delete the topics tests left behind; how many. Thousands of them make Kafka's start (log
    recovery) take minutes."""
    return asyncio.run(_prune(url))


async def _prune(url: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=url)
    await admin.start()
    try:
        left = sorted(topic for topic in await admin.list_topics() if _TEST_TOPIC.match(topic))
        for start in range(0, len(left), 200):
            await admin.delete_topics(left[start : start + 200], timeout_ms=60_000)
        return len(left)
    finally:
        await admin.close()
