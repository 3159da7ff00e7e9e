"""One Kafka client factory: every consumer, producer and admin client is built by the kafka-python transport."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

import streaming.transport.kafka_python as factory
from scorepipe.settings import Settings
from streaming.transport.kafka_python import KafkaPythonTransport
from streaming.transport.kafka_python import options as clients

ROOT = Path(__file__).resolve().parents[2]
CLIENT_CLASSES = {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient"}
FACTORY = ROOT / "streaming" / "transport" / "kafka_python" / "__init__.py"


def client_constructions(path: Path) -> list[int]:
    """Line numbers where ``path`` calls a kafka-python client class, or hands one to a call that builds it."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            handed = {
                arg.id for arg in node.args if isinstance(arg, ast.Name)
            }  # built by a helper: f(KafkaConsumer, ...)
            if name in CLIENT_CLASSES or handed & CLIENT_CLASSES:
                lines.append(node.lineno)
    return lines


def test_no_kafka_client_is_built_outside_the_factory():
    sources = [p for p in ROOT.rglob("*.py") if not {".venv", ".cache", ".scorepipe"} & set(p.parts)]
    assert len(sources) > 50
    elsewhere = {
        str(p.relative_to(ROOT)): lines for p in sources if p != FACTORY and (lines := client_constructions(p))
    }
    assert not elsewhere, f"Kafka clients built outside the kafka-python transport: {elsewhere}"
    assert client_constructions(FACTORY)  # the scan does find constructions where they are


def test_every_client_gets_the_settings_connection_options(monkeypatch):
    built = []

    def recorder(cls):
        def build(*args, **kwargs):
            built.append((cls.__name__, args, kwargs))

        return build

    for cls in (KafkaConsumer, KafkaProducer, KafkaAdminClient):
        monkeypatch.setattr(factory, cls.__name__, recorder(cls))
    settings = Settings(kafka_bootstrap_servers="10.1.2.3:9093")
    transport = KafkaPythonTransport()
    transport.consumer(settings, "features", group_id="g")
    transport.raw_producer(settings, acks="all")
    transport.admin(settings, request_timeout_ms=5)
    assert [name for name, _, _ in built] == ["KafkaConsumer", "KafkaProducer", "KafkaAdminClient"]
    assert all(kwargs["bootstrap_servers"] == "10.1.2.3:9093" for _, _, kwargs in built)
    assert built[0][1] == ("features",) and built[0][2]["group_id"] == "g"


def test_sasl_and_tls_settings_reach_the_clients_as_kafka_python_options(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("cert")
    key.write_text("key")
    scram = Settings(
        kafka_bootstrap_servers="b-1.example:9096",
        kafka_security_protocol="sasl_ssl",
        kafka_sasl_mechanism="scram-sha-512",
        kafka_sasl_username="alice",
        kafka_sasl_password="s3cret",
        kafka_ssl_cafile=ca,
        kafka_ssl_check_hostname=False,
    )
    options = clients.connection_options(scram)
    assert options == {
        "bootstrap_servers": "b-1.example:9096",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": str(ca),
        "ssl_check_hostname": False,
    }
    mtls = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=ca,
        kafka_ssl_certfile=cert,
        kafka_ssl_keyfile=key,
        kafka_ssl_key_password="kp",
    )
    options = clients.connection_options(mtls)
    assert (options["ssl_certfile"], options["ssl_keyfile"], options["ssl_password"]) == (str(cert), str(key), "kp")
    assert "sasl_mechanism" not in options
    assert clients.connection_options(Settings()) == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }


def test_aws_msk_iam_options_are_what_kafka_python_signs_with(monkeypatch):
    """No MSK here: the options build kafka-python's own mechanism, which signs with the AWS environment."""
    from kafka.net.sasl import get_sasl_mechanism

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    settings = Settings(
        kafka_bootstrap_servers="b-1.msk.eu-west-1.amazonaws.com:9098",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="AWS_MSK_IAM",
    )
    options = clients.connection_options(settings)
    assert (options["security_protocol"], options["sasl_mechanism"]) == ("SASL_SSL", "AWS_MSK_IAM")
    mechanism = get_sasl_mechanism(options["sasl_mechanism"])(host="b-1.msk.eu-west-1.amazonaws.com", **options)
    signed = json.loads(mechanism.auth_bytes())
    assert signed["action"] == "kafka-cluster:Connect"
    assert (
        signed["x-amz-credential"].startswith("AKIDEXAMPLE/")
        and "/eu-west-1/kafka-cluster/" in signed["x-amz-credential"]
    )
    assert signed["host"] == "b-1.msk.eu-west-1.amazonaws.com" and len(signed["x-amz-signature"]) == 64


def test_plaintext_clients_are_not_preflighted(monkeypatch):
    from streaming.transport.kafka_python import preflight

    attempts = []
    monkeypatch.setattr(preflight, "_attempt", lambda options, probe: attempts.append(options) or True)
    preflight.ensure_access(Settings(), clients.connection_options(Settings()), probe=KafkaAdminClient)
    assert attempts == []
