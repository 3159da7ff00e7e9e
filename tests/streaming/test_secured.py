"""scorepipe on a secured broker: SASL_SSL (SCRAM-SHA-512), mutual TLS, ACLs, and errors a person can act on.

Every test runs the real CLI or the real consumer against the project's broker in its secured
mode (a test CA made at its start, SCRAM users, StandardAuthorizer). Users and passwords are
made per test at run time.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from devservers.certificates import LocalAuthority
from devservers.kafka import KafkaBroker
from monitoring.health import Health
from scorepipe.settings import Settings
from scoring import Registry
from streaming.consumer import score_stream
from streaming.errors import KafkaAccessError
from streaming.producer import produce
from streaming.topics import ensure_topics, read_topic
from streaming.transport import transport_for
from tests.conftest import both_transports, topic_names
from tests.helpers import committed_total, everything_committed, scorer_for, wait_for

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 120
ERROR_WITHIN_S = 10.0


def cli(env: dict[str, str], *args: str, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scorepipe.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def readyz(url: str) -> dict:
    try:
        return json.loads(urllib.request.urlopen(f"{url}/readyz", timeout=5).read())
    except urllib.error.HTTPError as not_ready:
        return json.loads(not_ready.read())


@pytest.fixture
def names() -> dict[str, str]:
    return topic_names(uuid.uuid4().hex[:8])


@pytest.fixture
def registry_env(make_registry, tmp_path) -> dict[str, str]:
    registry = make_registry()
    return {"SCOREPIPE_HOME": str(tmp_path / "home"), "SCOREPIPE_REGISTRY": str(registry.root)}


def env_for(names: dict[str, str], **settings: object) -> dict[str, str]:
    values = {**names, "stream_batch_events": 200, "stream_batch_ms": 50, **settings}
    return {f"SCOREPIPE_{k.upper()}": str(v) for k, v in values.items()}


def new_user(broker: KafkaBroker, *grants: tuple[str, str, str]) -> tuple[str, str]:
    name, password = f"user-{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(16)
    broker.add_user(name, password)
    if grants:
        broker.allow(name, *grants)
    return name, password


@both_transports
def test_the_stream_end_to_end_over_sasl_ssl_with_the_brokers_properties_file_and_no_secret_anywhere(
    secure_broker, names, registry_env, tmp_path, kafka_client
):
    """produce, stream (with /readyz, /metrics), status, labels via --kafka-config; then search for the password."""
    config = str(secure_broker.client_properties)
    password = secure_broker.password("scorepipe")
    assert password in secure_broker.client_properties.read_text()
    assert oct(secure_broker.client_properties.stat().st_mode & 0o777) == "0o600"
    env = {**registry_env, **env_for(names, kafka_client=kafka_client)}
    outputs: list[str] = []

    produced = cli(env, "produce", "--kafka-config", config, "--count", "800", "--malformed", "0.05", "--seed", "3")
    outputs += [produced.stdout, produced.stderr]
    assert produced.returncode == 0, produced.stdout + produced.stderr
    assert "sent 800 events" in produced.stdout

    stream = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scorepipe.cli",
            "stream",
            "--kafka-config",
            config,
            "--metrics-port",
            "0",
            "--exit-when-idle",
            "4",
        ],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = ""
        while "metrics and health on " not in line:
            line = stream.stdout.readline()
            assert line, "the stream exited before it started scoring"
            outputs.append(line)
        url = line.split("metrics and health on ")[1].split(";")[0]
        settings = secure_broker.sasl_settings(**names)
        wait_for(everything_committed(settings), timeout=90, what="every event committed over SASL_SSL")
        wait_for(lambda: readyz(url)["status"] == "ready", timeout=30, what="/readyz ready")
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
        outputs += [json.dumps(readyz(url)), metrics]
        assert "scorepipe_stream_events_total" in metrics
        rest, _ = stream.communicate(timeout=60)
        outputs.append(rest)
    finally:
        if stream.poll() is None:
            stream.kill()
            stream.wait()
    assert stream.returncode == 0, "".join(outputs[-1:])

    predictions = read_topic(settings, names["predictions_topic"])
    letters = read_topic(settings, names["dlq_topic"])
    assert len(predictions) + len(letters) == 800 and len(letters) > 10
    assert len({m.key for m in predictions}) == len(predictions)

    status = cli(env, "status", "--kafka-config", config)
    outputs += [status.stdout, status.stderr]
    assert status.returncode == 0 and names["consumer_group"] in status.stdout, status.stdout + status.stderr

    labels_env = {**env, "SCOREPIPE_KAFKA_CONFIG": config}  # the variable instead of the option
    producer = transport_for(settings).producer(settings)
    for m in predictions[:50]:
        producer.send(
            f"labels-{names['consumer_group']}", json.dumps({"event_id": m.key.decode(), "label": 1}).encode()
        )
    producer.flush()
    producer.close()
    labels = cli(
        labels_env,
        "labels",
        "--topic",
        f"labels-{names['consumer_group']}",
        "--out",
        str(tmp_path / "labels"),
        "--exit-when-idle",
        "3",
    )
    outputs += [labels.stdout, labels.stderr]
    assert labels.returncode == 0, labels.stdout + labels.stderr
    assert "50 labels" in labels.stdout

    wrong = {**env, "SCOREPIPE_KAFKA_SASL_PASSWORD": password[::-1]}
    failed = cli(wrong, "produce", "--kafka-config", config, "--count", "1")
    outputs += [failed.stdout, failed.stderr]
    assert failed.returncode != 0 and "authentication failed" in failed.stdout

    leaked = [i for i, text in enumerate(outputs) if password in text or password[::-1] in text]
    assert not leaked, f"the password appears in outputs {leaked}"
    assert sum(len(o) for o in outputs) > 2000  # the search did look at real output


@both_transports
def test_the_stream_over_mutual_tls_predicts_every_event_once(secure_broker, stream_settings, kafka_client):
    settings = secure_broker.mtls_settings(
        **{k: getattr(stream_settings(), k) for k in (*topic_names("x"), "home", "registry")},
        stream_batch_events=200,
        kafka_client=kafka_client,
    )
    ensure_topics(settings)
    sent = produce(settings, count=600, seed=8, malformed_share=0.05)
    stats = score_stream(settings, scorer_for(settings)).run(idle_exit_seconds=1)
    assert stats.events == 600 and stats.dead_letters == sent.malformed
    assert len(read_topic(settings, settings.predictions_topic)) == 600 - sent.malformed
    assert everything_committed(settings)()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong password", "Kafka authentication failed for user {user} (SCRAM-SHA-512) at {sasl}"),
        ("unknown user", "Kafka authentication failed for user nobody-{tag} (SCRAM-SHA-512) at {sasl}"),
        ("mechanism not enabled", "does not enable SASL mechanism SCRAM-SHA-256"),
        ("untrusted certificate", "is not trusted"),
        ("no client certificate", "requires a client certificate"),
        ("TLS to a plaintext listener", "hung up on the TLS handshake"),
    ],
)
@both_transports
def test_a_refused_connection_is_named_within_seconds_with_a_non_zero_exit(
    secure_broker, names, tmp_path, case, expected, kafka_client
):
    user, password = new_user(secure_broker)
    tag = uuid.uuid4().hex[:4]
    sasl = {
        "kafka_bootstrap_servers": secure_broker.sasl_bootstrap_servers,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": user,
        "kafka_sasl_password": password,
        "kafka_ssl_cafile": secure_broker.ca_file,
    }
    other_ca = LocalAuthority(tmp_path / "other-ca")
    variants = {
        "wrong password": {**sasl, "kafka_sasl_password": password + "x"},
        "unknown user": {**sasl, "kafka_sasl_username": f"nobody-{tag}"},
        "mechanism not enabled": {**sasl, "kafka_sasl_mechanism": "SCRAM-SHA-256"},
        "untrusted certificate": {**sasl, "kafka_ssl_cafile": other_ca.cert_path},
        "no client certificate": {
            "kafka_bootstrap_servers": secure_broker.mtls_bootstrap_servers,
            "kafka_security_protocol": "SSL",
            "kafka_ssl_cafile": secure_broker.ca_file,
        },
        "TLS to a plaintext listener": {**sasl, "kafka_bootstrap_servers": secure_broker.bootstrap_servers},
    }
    started = time.monotonic()
    result = cli(env_for(names, **variants[case], kafka_client=kafka_client), "produce", "--count", "1")
    took = time.monotonic() - started
    message = expected.format(user=user, tag=tag, sasl=secure_broker.sasl_bootstrap_servers)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in " ".join(result.stdout.split()), result.stdout
    assert took < ERROR_WITHIN_S + 5  # the interpreter's start and imports, plus the named error's 10 s
    if case == "untrusted certificate":
        assert "kafka_ssl_cafile" in result.stdout and str(other_ca.cert_path) in " ".join(result.stdout.split())
    assert password not in result.stdout + result.stderr


def test_a_certificate_that_does_not_name_the_host_is_named(tmp_path_factory):
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-other-name"), secure=True, tls_hosts=("localhost",)).start()
    try:
        settings = broker.sasl_settings()
        started = time.monotonic()
        with pytest.raises(KafkaAccessError, match="does not name that host") as refused:
            transport_for(settings).reader(settings)
        assert time.monotonic() - started < ERROR_WITHIN_S
        assert "kafka_ssl_check_hostname" in str(refused.value) and "127.0.0.1" in str(refused.value)
        way_out = broker.sasl_settings(kafka_ssl_check_hostname=False)
        transport_for(way_out).reader(way_out).close()  # the way out it names
    finally:
        broker.stop()


@both_transports
def test_a_consumer_not_allowed_to_write_predictions_commits_nothing_is_not_ready_and_recovers_when_granted(
    secure_broker, names, make_registry, tmp_path, kafka_client
):
    registry: Registry = make_registry()
    user, password = new_user(
        secure_broker, ("TOPIC", names["features_topic"], "READ"), ("GROUP", names["consumer_group"], "READ")
    )
    owner = secure_broker.sasl_settings(**names)
    ensure_topics(owner)
    produce(owner, count=500, seed=4)
    settings = secure_broker.sasl_settings(
        user,
        password,
        **names,
        home=tmp_path / "home",
        registry=str(registry.root),
        stream_retry_max_seconds=1.0,
        kafka_client=kafka_client,
    )
    health = Health()
    consumer = score_stream(settings, scorer_for(settings), health=health)
    thread = threading.Thread(target=consumer.run, kwargs={"idle_exit_seconds": 60}, daemon=True)
    thread.start()
    try:

        def refused() -> bool:
            ready, checks = health.ready()
            return not ready and "not authorized to WRITE" in checks["results"]

        wait_for(refused, timeout=30, what="/readyz to report the refused write")
        _, checks = health.ready()
        assert names["predictions_topic"] in checks["results"] and f"user {user}" in checks["results"]
        assert not everything_committed(owner)()
        assert committed_total(owner) == 0
        secure_broker.allow(
            user, ("TOPIC", names["predictions_topic"], "WRITE"), ("TOPIC", names["dlq_topic"], "WRITE")
        )
        wait_for(everything_committed(owner), timeout=60, what="every event committed once the ACL is granted")
        wait_for(lambda: health.ready()[0], timeout=20, what="ready again")
    finally:
        consumer.stop()
        thread.join(60)
    keys = {m.key for m in read_topic(owner, names["predictions_topic"])}
    assert len(keys) == 500  # nothing lost (a refused batch may have been sent twice: never half)


@pytest.mark.parametrize("missing", ["input topic", "consumer group"])
@both_transports
def test_a_consumer_not_allowed_to_read_says_so_and_exits(secure_broker, names, registry_env, missing, kafka_client):
    grants = [("TOPIC", names["predictions_topic"], "WRITE"), ("TOPIC", names["dlq_topic"], "WRITE")]
    grants.append(
        ("GROUP", names["consumer_group"], "READ")
        if missing == "input topic"
        else ("TOPIC", names["features_topic"], "READ")
    )
    user, password = new_user(secure_broker, *grants)
    owner = secure_broker.sasl_settings(**names)
    ensure_topics(owner)
    env = {
        **registry_env,
        **env_for(
            names,
            kafka_bootstrap_servers=secure_broker.sasl_bootstrap_servers,
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username=user,
            kafka_sasl_password=password,
            kafka_ssl_cafile=secure_broker.ca_file,
            kafka_client=kafka_client,
        ),
    }
    result = cli(env, "stream", "--exit-when-idle", "60", timeout=90)
    text = " ".join(result.stdout.split())
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    what = (
        f"READ on topic {names['features_topic']}"
        if missing == "input topic"
        else (f"READ for consumer group {names['consumer_group']}")
    )
    assert f"Kafka ACLs do not allow {what} (user {user})" in text, text[-2000:] + result.stderr[-3000:]


def test_settings_from_the_secured_brokers_properties_file_match_its_listener(secure_broker):
    settings = Settings(kafka_config=Path(secure_broker.client_properties))
    assert settings.kafka_bootstrap_servers == secure_broker.sasl_bootstrap_servers
    assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert settings.kafka_sasl_password.get_secret_value() == secure_broker.password("scorepipe")
    assert secure_broker.password("scorepipe") not in repr(settings)
    mtls = Settings(kafka_config=Path(secure_broker.mtls_properties))
    transport_for(mtls).reader(mtls).close()


def test_kafka_up_secure_prints_how_to_connect_and_its_properties_file_works(tmp_path):
    from devservers.process import free_port

    home = tmp_path / "sp"
    env = {"SCOREPIPE_HOME": str(home)}
    try:
        up = cli(env, "kafka", "up", "--secure", "--port", str(free_port()))
        assert up.returncode == 0, up.stdout + up.stderr
        text = " ".join(up.stdout.split())
        properties = home / "kafka" / "client.properties"
        assert f"export SCOREPIPE_KAFKA_CONFIG={properties}" in text
        assert "SASL_SSL (SCRAM-SHA-512, user scorepipe)" in text and "mutual TLS" in text
        password = KafkaBroker(home / "kafka").password("scorepipe")
        assert password not in up.stdout + up.stderr
        status = cli(env, "kafka", "status")
        assert status.returncode == 0 and "SASL_SSL at 127.0.0.1:" in " ".join(status.stdout.split())
        names = topic_names(uuid.uuid4().hex[:8])
        for config in (properties, home / "kafka" / "client-mtls.properties"):
            sent = cli({**env, **env_for(names)}, "produce", "--kafka-config", str(config), "--count", "20")
            assert sent.returncode == 0 and "sent 20 events" in sent.stdout, sent.stdout + sent.stderr
        assert len(read_topic(Settings(kafka_config=properties, **names), names["features_topic"])) == 40
    finally:
        KafkaBroker.stop_detached(home / "kafka")
