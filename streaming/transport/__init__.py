"""The Kafka transport boundary: the one place a Kafka client library is named.

``base`` holds what the stream speaks (partitions, records, the clients' interfaces, the error
family); each client library is a package implementing it (``kafka_python``). ``transport_for``
builds the one the settings choose, importing its library only then.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from scoring.errors import SettingsError
from streaming.settings import KafkaSettings, StreamSettings
from streaming.transport.base import Admin, Consumer, Producer, Transactions


class Transport(Protocol):
    """Every Kafka client the stream, the label sink, topics and status build."""

    name: str

    def admin(
        self, settings: KafkaSettings, *, request_timeout_ms: int = 30_000, bootstrap_timeout_ms: int | None = None
    ) -> Admin: ...

    def reader(
        self, settings: KafkaSettings, *, read_committed: bool = True, request_timeout_ms: int | None = None
    ) -> Consumer: ...

    def producer(self, settings: KafkaSettings, *, linger_ms: int = 10) -> Producer: ...

    def stream_consumer(self, settings: StreamSettings, client_id: str) -> Consumer: ...

    def label_consumer(self, settings: StreamSettings, topic: str, *, commit_timeout_ms: int) -> Consumer: ...

    def stream_producer(self, settings: StreamSettings, client_id: str, **options: Any) -> Producer: ...

    def transactions(self, settings: StreamSettings, client_id: str, stopping: threading.Event) -> Transactions: ...


def transport_for(settings: KafkaSettings) -> Transport:
    """The transport of ``settings.kafka_client``."""
    if settings.kafka_client == "kafka-python":
        from streaming.transport.kafka_python import KafkaPythonTransport

        return KafkaPythonTransport()
    if settings.kafka_client == "confluent":
        try:
            from streaming.transport.confluent import ConfluentTransport
        except ImportError as exc:
            raise SettingsError(
                f"kafka_client confluent needs confluent-kafka ({exc}): pip install 'scorepipe[confluent]'"
            ) from None
        return ConfluentTransport()
    raise SettingsError(f"kafka_client {settings.kafka_client!r}: no such transport (kafka-python, confluent)")
