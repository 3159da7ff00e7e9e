"""One Kafka client factory: every consumer, producer and admin client of the project is built by it."""

from __future__ import annotations

import ast
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from scoring import Settings
from streaming import clients

ROOT = Path(__file__).resolve().parents[2]
CLIENT_CLASSES = {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient"}
FACTORY = ROOT / "streaming" / "clients.py"


def client_constructions(path: Path) -> list[int]:
    """Line numbers where ``path`` calls a kafka-python client class itself."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name in CLIENT_CLASSES:
                lines.append(node.lineno)
    return lines


def test_no_kafka_client_is_built_outside_the_factory():
    sources = [p for p in ROOT.rglob("*.py") if not {".venv", ".cache", ".scorepipe"} & set(p.parts)]
    assert len(sources) > 50
    elsewhere = {
        str(p.relative_to(ROOT)): lines for p in sources if p != FACTORY and (lines := client_constructions(p))
    }
    assert not elsewhere, f"Kafka clients built outside streaming/clients.py: {elsewhere}"
    assert client_constructions(FACTORY)  # the scan does find constructions where they are


def test_every_client_gets_the_settings_connection_options(monkeypatch):
    built = []

    def recorder(cls):
        def build(*args, **kwargs):
            built.append((cls.__name__, args, kwargs))

        return build

    for cls in (KafkaConsumer, KafkaProducer, KafkaAdminClient):
        monkeypatch.setattr(clients, cls.__name__, recorder(cls))
    settings = Settings(kafka_bootstrap_servers="10.1.2.3:9093")
    clients.kafka_consumer(settings, "features", group_id="g")
    clients.kafka_producer(settings, acks="all")
    clients.kafka_admin(settings, request_timeout_ms=5)
    assert [name for name, _, _ in built] == ["KafkaConsumer", "KafkaProducer", "KafkaAdminClient"]
    assert all(kwargs["bootstrap_servers"] == "10.1.2.3:9093" for _, _, kwargs in built)
    assert built[0][1] == ("features",) and built[0][2]["group_id"] == "g"
