"""Shared fixtures. Fixtures that build things are factories, so each test gets its own copy."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from devservers.kafka import KafkaBroker
from devservers.mlflow import MLflowServer
from devservers.process import free_port
from devservers.s3 import S3Server
from scorepipe.settings import Settings
from scoring import ModelBundle, Registry, Scorer, synthetic
from scoring.compiled import TreeCompiler
from scoring.training import train_bundle

TREES_CACHE = Path(tempfile.mkdtemp(prefix="scorepipe-test-trees-"))

# Fixtures that start or reach a real server: a test using one must carry the integration marker.
SERVER_FIXTURES = frozenset(
    {"prefect_server", "kafka_bootstrap", "stream_settings", "secure_broker", "s3_server", "s3_bucket", "mlflow_server"}
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run a test that uses a server fixture without the integration marker (the tiers stay honest)."""
    unmarked = [
        item.nodeid
        for item in items
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError("tests using a real server lack @pytest.mark.integration: " + ", ".join(unmarked))


def pytest_configure(config: pytest.Config) -> None:
    """Keep Prefect's state out of the user's home and quiet, before anything imports prefect."""
    home = tempfile.mkdtemp(prefix="scorepipe-test-prefect-")
    os.environ["PREFECT_HOME"] = home
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
    os.environ.pop("PREFECT_API_URL", None)
    for name in [n for n in os.environ if n.startswith("SCOREPIPE_")]:
        del os.environ[name]
    # Compiled trees are kept by content for the whole session (in-process and child processes alike),
    # so the same model trained by many tests is compiled once.
    os.environ["SCOREPIPE_TREES_CACHE"] = str(TREES_CACHE)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(TREES_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def training_frame() -> pd.DataFrame:
    return synthetic.generate(6_000, seed=11)


def _train(frame: pd.DataFrame, seed: int) -> ModelBundle:
    """The default pipeline with its compiled trees, as ``scorepipe train`` registers it."""
    bundle = train_bundle(
        frame,
        synthetic.TARGET,
        features=list(synthetic.FEATURES),
        bounds=synthetic.BOUNDS,
        reference_rows=500,
        seed=seed,
    )
    return TreeCompiler(cache=TREES_CACHE).attach(bundle)


@pytest.fixture(scope="session")
def bundle(training_frame: pd.DataFrame) -> ModelBundle:
    """The default pipeline trained once per session on a small synthetic set."""
    return _train(training_frame, 11)


@pytest.fixture
def make_registry(tmp_path: Path, bundle: ModelBundle) -> Callable[..., Registry]:
    """Factory: a fresh registry in a temp folder, with ``versions`` copies of the bundle, v1 champion."""

    def make(versions: int = 1, *, name: str = "registry") -> Registry:
        registry = Registry(tmp_path / name)
        for _ in range(versions):
            registry.register(bundle, note="test")
        if versions:
            registry.promote(1, "champion")
        return registry

    return make


@pytest.fixture
def scorer(bundle: ModelBundle) -> Scorer:
    return Scorer(bundle, version=1)


@pytest.fixture
def write_parquet() -> Callable[[Path, pd.DataFrame], Path]:
    def write(path: Path, frame: pd.DataFrame) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        return path

    return write


@pytest.fixture
def incoming_rows() -> Callable[..., pd.DataFrame]:
    """Factory: unlabelled transactions from a seed the model was not trained on."""

    def make(n: int, *, seed: int = 99, drifted: bool = False) -> pd.DataFrame:
        return synthetic.generate(n, seed=seed, drifted=drifted, with_target=False)

    return make


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (SQLite) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def challenger_bundle() -> ModelBundle:
    """A second, different model (trained on drifted data): it disagrees with ``bundle`` on some rows."""
    return _train(synthetic.generate(6_000, seed=12, drifted=True), 12)


# -- one real Kafka broker per test session, and per-test topics and groups ------------------
# The broker comes from, in order: ``KAFKA_BOOTSTRAP_SERVERS``; an ``apache/kafka`` container when a
# Docker engine answers; else the project's own local broker (Apache Kafka jars from Maven Central).

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


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker with SASL_SSL (SCRAM-SHA-512; OAUTHBEARER with unsigned tokens) and mutual-TLS listeners,
    a test CA and ACLs enforced."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-secure"), secure=True, unsecured_oauth=True).start()
    try:
        yield broker
    finally:
        broker.stop()


def topic_names(suffix: str) -> dict[str, str]:
    """Topic and group names of one test: nothing is shared with another test."""
    return {
        "features_topic": f"features-{suffix}",
        "predictions_topic": f"predictions-{suffix}",
        "dlq_topic": f"features-{suffix}.dlq",
        "shadow_topic": f"predictions-{suffix}.shadow",
        "consumer_group": f"scorepipe-{suffix}",
    }


KAFKA_CLIENTS = ("kafka-python", "confluent")
both_transports = pytest.mark.parametrize("kafka_client", KAFKA_CLIENTS)
"""Runs a stream test on each Kafka transport (its ``stream_settings`` use the parametrized client)."""


@pytest.fixture
def kafka_client() -> str:
    """The Kafka client library of a test's stream settings (``both_transports`` runs a test on each)."""
    return "kafka-python"


@pytest.fixture
def stream_settings(kafka_bootstrap: str, make_registry, tmp_path, kafka_client: str) -> Callable[..., Settings]:
    """Factory: settings with this test's own topics, group, registry, live-window folder and Kafka client."""
    registry = make_registry()
    suffix = uuid.uuid4().hex[:8]

    def make(**overrides) -> Settings:
        values = {
            "home": tmp_path / "home",
            "registry": registry.root,
            "kafka_bootstrap_servers": kafka_bootstrap,
            "kafka_client": kafka_client,
            **topic_names(suffix),
            "stream_batch_events": 200,
            "stream_batch_ms": 50,
            "stream_session_timeout_ms": 6000,
            **overrides,
        }
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 API (S3Proxy, filesystem backend) for the session; the AWS variables point at it.

    They are set in this process's environment, so Dask workers and child processes see them too,
    and restored afterwards. Tests use their own bucket from ``s3_bucket``.
    """
    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    saved = {name: os.environ.get(name) for name in server.client_env()}
    os.environ.update(server.client_env())
    try:
        yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh bucket for one test: ``s3://<name>``."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLflowServer]:
    """A real MLflow tracking server (its own venv, built once under .cache), stopped by its process group."""
    server = MLflowServer(tmp_path_factory.mktemp("mlflow")).start()
    try:
        yield server
    finally:
        server.stop()
