"""One real Kafka broker per test session, and per-test topics and groups so tests never share state.

The broker comes from, in order: ``KAFKA_BOOTSTRAP_SERVERS``; an ``apache/kafka`` container when a
Docker engine answers; else the project's own local broker (Apache Kafka jars from Maven Central).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from scorepipe.kafka_broker import KafkaBroker
from scorepipe.services import free_port
from scoring import Settings

KAFKA_IMAGE = "apache/kafka:4.1.1"


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means: no usable engine here
        return False


def _container_broker() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = free_port()
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://0.0.0.0:9092,CONTROLLER://localhost:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_NUM_PARTITIONS", "4")
    )
    with container:
        wait_for_logs(container, "Kafka Server started", timeout=120)
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    elif _docker_answers():
        yield from _container_broker()
    else:
        broker = KafkaBroker(tmp_path_factory.mktemp("kafka")).start()
        try:
            yield broker.bootstrap_servers
        finally:
            broker.stop()


@pytest.fixture
def stream_settings(kafka_bootstrap: str, make_registry, tmp_path) -> Callable[..., Settings]:
    """Factory: settings with this test's own topics, group, registry and live-window folder."""
    registry = make_registry()
    suffix = uuid.uuid4().hex[:8]

    def make(**overrides) -> Settings:
        values = {
            "home": tmp_path / "home",
            "registry": registry.root,
            "kafka_bootstrap_servers": kafka_bootstrap,
            "features_topic": f"features-{suffix}",
            "predictions_topic": f"predictions-{suffix}",
            "dlq_topic": f"features-{suffix}.dlq",
            "consumer_group": f"scorepipe-{suffix}",
            "stream_batch_events": 200,
            "stream_batch_ms": 50,
            "stream_session_timeout_ms": 6000,
            **overrides,
        }
        return Settings(**values)

    return make
