"""A real single-node Apache Kafka broker (KRaft), resolved from Maven Central and run with ``java``.

No Docker needed: ``pom.xml`` beside this file pins the broker; Maven copies its jars into
``.cache/kafka/libs`` once. A broker lives in one folder (``home``): its log folder is formatted on
the first start only, and its cluster id and ports are kept in ``identity.json``, so stopping and
starting it again keeps every topic, message and committed offset. ``reset=True`` starts afresh.
It listens on 127.0.0.1 (a free port unless told otherwise) and is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from scorepipe.services import (
    ManagedProcess,
    ServiceError,
    free_port,
    maven_jars,
    port_in_use,
    read_recorded,
    record_detached,
    stop_recorded,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
POM = HERE / "kafka" / "pom.xml"
LIBS = REPO / ".cache" / "kafka" / "libs"
IDENTITY_FILE = "identity.json"

LOG4J = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


def ensure_jars(libs: Path = LIBS) -> Path:
    """Resolve the broker's jars with Maven into ``libs`` unless they are already there."""
    return maven_jars(POM, libs, marker="kafka_2.13-*.jar", what="the Kafka broker")


class KafkaBroker(ManagedProcess):
    """One KRaft node (broker and controller) with its data, cluster id and ports under ``home``."""

    def __init__(
        self, home: Path, *, port: int | None = None, partitions: int = 4, heap: str = "512m", reset: bool = False
    ):
        self.home = home
        self.reset = reset
        known = {} if reset else read_identity(home)
        self.cluster_id: str = known.get("cluster_id") or uuid.uuid4().hex[:22]
        self.port = port or known.get("port") or free_port()
        self.controller_port = known.get("controller_port") or free_port()
        self.partitions = partitions
        classpath = f"{ensure_jars()}/*"
        java = [
            "java",
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
            "-cp",
            classpath,
        ]
        self._java = java
        super().__init__(
            "kafka broker",
            [*java, "kafka.Kafka", str(home / "server.properties")],
            env=dict(os.environ),
            log_path=home / "broker.log",
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def _configure(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        data = self.data_dir
        formatted = (data / "meta.properties").exists()
        if self.reset or not formatted:
            shutil.rmtree(data, ignore_errors=True)
        for port in (self.port, self.controller_port):
            if port_in_use(port):
                raise ServiceError(f"port {port} on 127.0.0.1 is taken: is another broker using {self.home}?")
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": str(self.partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.retention.hours": "168",
        }
        (self.home / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        (self.home / "log4j2.properties").write_text(LOG4J)
        if not (data / "meta.properties").exists():
            self._format()
        identity = {"cluster_id": self.cluster_id, "port": self.port, "controller_port": self.controller_port}
        (self.home / IDENTITY_FILE).write_text(json.dumps({**identity, "data_dir": str(data)}, indent=2))

    def _format(self) -> None:
        result = subprocess.run(
            [
                *self._java,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                self.cluster_id,
                "-c",
                str(self.home / "server.properties"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise ServiceError(f"formatting the Kafka log folder failed:\n{result.stdout}\n{result.stderr}")

    def start(self, timeout: float = 90.0) -> KafkaBroker:  # type: ignore[override]
        self._configure()
        super().start()
        self.wait_until(lambda: port_in_use(self.port), timeout=timeout, what="reachable")
        self.wait_until(self._answers_metadata, timeout=timeout, what="ready")
        return self

    def _answers_metadata(self) -> bool:
        from kafka.errors import KafkaError

        from scoring import Settings
        from streaming.clients import kafka_admin

        try:
            admin = kafka_admin(Settings(kafka_bootstrap_servers=self.bootstrap_servers), request_timeout_ms=5000)
        except KafkaError:
            return False
        try:
            admin.describe_cluster()
            return True
        except KafkaError:
            return False
        finally:
            admin.close()

    # -- detached use by `scorepipe kafka up|down|status` -----------------------------------

    def save_state(self) -> None:
        record_detached(
            self.home / "broker.json", pid=self.pid, port=self.port, bootstrap_servers=self.bootstrap_servers
        )


def read_identity(home: Path) -> dict:
    """The cluster id and ports a broker in ``home`` was formatted with ({} before its first start)."""
    identity = read_recorded(home / IDENTITY_FILE) or {}
    return identity if (home / "data" / "meta.properties").exists() else {}


def read_state(home: Path) -> dict | None:
    return read_recorded(home / "broker.json")


def stop_detached(home: Path, timeout: float = 30.0) -> dict | None:
    """Stop a broker started by ``scorepipe kafka up``, by the PID it recorded."""
    return stop_recorded(home / "broker.json", timeout=timeout)
