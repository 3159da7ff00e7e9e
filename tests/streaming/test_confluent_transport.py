"""The confluent transport's own pieces without a broker: librdkafka options, error translation, one factory.

Its behaviour on a real broker is proven by the streaming suite, which runs on both transports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from scorepipe.settings import Settings
from scoring import SettingsError
from streaming.transport import transport_for
from streaming.transport.base import NotAuthorized, ProducerFenced, TransportError, TransportTimeout
from streaming.transport.confluent import ConfluentTransport
from streaming.transport.confluent.errors import translate
from streaming.transport.confluent.options import connection_config, explain, refused_at_tls

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "streaming" / "transport" / "confluent"
LIBRDKAFKA_CLIENTS = {"Consumer", "Producer", "AdminClient"}


def test_librdkafka_clients_are_built_only_inside_the_confluent_transport():
    # bench/transports.py builds librdkafka clients by hand on purpose: the reference loop it measures against
    skipped = {".venv", ".cache", ".scorepipe", "tests", "bench"}
    sources = [p for p in ROOT.rglob("*.py") if not skipped & set(p.parts)]
    importing = {}
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("confluent_kafka"):
                importing.setdefault(str(path.relative_to(ROOT)), set()).update(a.name for a in node.names)
    assert importing  # the premise: the scan finds the transport's imports
    outside = {p: names for p, names in importing.items() if not p.startswith("streaming/transport/confluent/")}
    assert not outside, f"confluent_kafka imported outside its transport: {outside}"
    built = {p for p, names in importing.items() if names & LIBRDKAFKA_CLIENTS}
    # the adapters, and the preflight's one metadata request
    assert built <= {f"streaming/transport/confluent/{m}.py" for m in ("consumer", "producer", "admin", "options")}


def test_the_security_settings_map_onto_librdkafka_names(tmp_path):
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "client.pem", "client.key"))
    for path in (ca, cert, key):
        path.write_text("-----BEGIN-----\n")  # the settings check the files exist; librdkafka reads them later
    settings = Settings(
        kafka_bootstrap_servers="b1:9093,b2:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="alice",
        kafka_sasl_password="s3cret-value",
        kafka_ssl_cafile=ca,
        kafka_ssl_certfile=cert,
        kafka_ssl_keyfile=key,
        kafka_ssl_check_hostname=False,
    )
    config = connection_config(settings)
    assert {k: v for k, v in config.items() if k != "logger"} == {
        "bootstrap.servers": "b1:9093,b2:9093",
        "security.protocol": "sasl_ssl",
        "log.connection.close": False,
        "ssl.endpoint.identification.algorithm": "none",
        "ssl.ca.location": str(ca),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": "s3cret-value",
    }
    plain = connection_config(Settings())
    assert plain["security.protocol"] == "plaintext" and not any(k.startswith(("ssl.", "sasl.")) for k in plain)


def test_msk_iam_is_named_as_not_offered_by_this_transport():
    settings = Settings(
        kafka_bootstrap_servers="b:9098", kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="AWS_MSK_IAM"
    )
    with pytest.raises(SettingsError, match="AWS_MSK_IAM is not offered by the confluent transport"):
        connection_config(settings)


def test_librdkafka_errors_become_the_transports():
    def raised(code: int, text: str = "x", **flags: bool) -> BaseException:
        return translate(KafkaException(KafkaError(code, text, **flags)))

    refused = raised(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    assert isinstance(refused, NotAuthorized) and refused.resource == "topic"
    assert "TOPIC_AUTHORIZATION_FAILED" in str(refused)
    assert isinstance(raised(KafkaError._FENCED), ProducerFenced)
    assert isinstance(raised(KafkaError._TIMED_OUT), TransportTimeout)
    loading = raised(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)
    assert isinstance(loading, TransportError) and loading.retriable
    fatal_refusal = raised(KafkaError._FATAL, "Fatal error: Broker: Cluster authorization failed")
    assert isinstance(fatal_refusal, NotAuthorized) and fatal_refusal.resource == "cluster"
    assert not raised(KafkaError._FATAL, "something else").retriable
    assert isinstance(translate(BufferError("queue full")), TransportError)
    assert translate(ValueError("x")).__class__ is ValueError  # not the library's: left as it is


def test_refusals_read_from_librdkafka_are_named_as_the_other_transport_names_them():
    settings = Settings(
        kafka_bootstrap_servers="b:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="alice",
        kafka_sasl_password="pw-not-shown",
    )
    login = explain(
        settings,
        KafkaError(
            KafkaError._AUTHENTICATION,
            "sasl_ssl://b:9093/bootstrap: SASL authentication error: Authentication failed during authentication "
            "due to invalid credentials with SASL mechanism SCRAM-SHA-512",
        ),
    )
    assert login.startswith("Kafka authentication failed for user alice (SCRAM-SHA-512) at b:9093")
    plaintext = KafkaError(
        KafkaError._TRANSPORT, "SSL handshake failed: Disconnected: connecting to a PLAINTEXT broker listener?"
    )
    assert refused_at_tls(plaintext) and "hung up on the TLS handshake" in explain(settings, plaintext)
    assert not refused_at_tls(KafkaError(KafkaError._TRANSPORT, "Connect to ipv4#10.0.0.1:9093 failed"))
    assert "pw-not-shown" not in login


def test_the_settings_choose_the_confluent_transport():
    assert isinstance(transport_for(Settings(kafka_client="confluent")), ConfluentTransport)


def test_a_partition_sent_to_its_start_is_read_from_the_log_start_not_the_groups_offset():
    """After a seek to the beginning, position() is the log's start, even while the group coordinator moves.

    Once, a reader whose broker had just resumed asked the group for its committed offset there and
    failed with NOT_COORDINATOR; the group's offset has no say after that seek in any case.
    """
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID
    from confluent_kafka import TopicPartition as KafkaPartition

    from streaming.transport.base import TopicPartition
    from streaming.transport.confluent.consumer import Consumer

    class Librdkafka:
        """What the consumer asks of librdkafka here: positions, committed offsets, watermarks."""

        committed_asked = 0

        def seek(self, partition):
            pass

        def position(self, partitions):
            return [KafkaPartition(p.topic, p.partition, OFFSET_INVALID) for p in partitions]  # nothing fetched

        def committed(self, partitions, timeout=None):
            self.committed_asked += 1
            raise KafkaException(KafkaError(KafkaError.NOT_COORDINATOR, "Not coordinator"))

        def get_watermark_offsets(self, partition, timeout=None, cached=False):
            return (7, 42)

        def close(self):
            pass

    consumer = Consumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "reader"})
    real, consumer.client = consumer.client, Librdkafka()
    try:
        tp = TopicPartition("predictions", 0)
        consumer.seek(tp, OFFSET_BEGINNING)
        assert consumer.position(tp) == 7 and consumer.client.committed_asked == 0
        consumer.seek(tp, 3)  # any other seek: the group's offset counts again where nothing is fetched
        with pytest.raises(TransportError, match="NOT_COORDINATOR"):
            consumer.position(tp)
    finally:
        real.close()
