"""The kafka-python transport: every Kafka client scorepipe builds, on kafka-python 3.

Connection settings (brokers, security) reach every client from one place (``options``); each
factory below passes only what is particular to its use. Everything of kafka-python (its clients,
structures, errors and the internals some steps need: the transaction manager, the sender, the
network client the preflight listens to) stays in this package.
"""

from __future__ import annotations

import threading
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from streaming.settings import KafkaSettings, StreamSettings
from streaming.transport.kafka_python.admin import Admin
from streaming.transport.kafka_python.consumer import Consumer
from streaming.transport.kafka_python.errors import translate
from streaming.transport.kafka_python.options import checked_options
from streaming.transport.kafka_python.producer import Producer
from streaming.transport.kafka_python.transactions import Transactions

__all__ = ["KafkaPythonTransport"]


def _built(build: Any, *args: Any, **options: Any) -> Any:
    try:
        return build(*args, **options)
    except KafkaError as exc:
        raise translate(exc) from exc


class KafkaPythonTransport:
    """Builds kafka-python clients behind the transport's interfaces."""

    name = "kafka-python"

    def consumer(self, settings: KafkaSettings, *topics: str, **options: Any) -> Consumer:
        """A consumer of ``topics`` (or none, for ``assign``); ``options`` are kafka-python's."""
        return Consumer(_built(KafkaConsumer, *topics, **checked_options(settings), **options))

    def raw_producer(self, settings: KafkaSettings, **options: Any) -> Producer:
        """A producer; ``options`` are kafka-python's."""
        return Producer(_built(KafkaProducer, **checked_options(settings), **options))

    def admin(
        self, settings: KafkaSettings, *, request_timeout_ms: int = 30_000, bootstrap_timeout_ms: int | None = None
    ) -> Admin:
        options: dict[str, Any] = {"request_timeout_ms": request_timeout_ms}
        if bootstrap_timeout_ms is not None:
            options["bootstrap_timeout_ms"] = bootstrap_timeout_ms
        return Admin(_built(KafkaAdminClient, **checked_options(settings), **options))

    def reader(
        self, settings: KafkaSettings, *, read_committed: bool = True, request_timeout_ms: int | None = None
    ) -> Consumer:
        """A consumer in no group, for metadata, end offsets and reading chosen partitions.

        ``read_committed``: what transactions wrote is read once committed, and end offsets stop
        before open transactions; otherwise end offsets are the high watermarks.
        """
        options: dict[str, Any] = {
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed" if read_committed else "read_uncommitted",
        }
        if request_timeout_ms is not None:
            options["request_timeout_ms"] = request_timeout_ms
        return self.consumer(settings, **options)

    def producer(self, settings: KafkaSettings, *, linger_ms: int = 10) -> Producer:
        """A producer of events (the demo's, the benchmarks'), acknowledged by all replicas."""
        return self.raw_producer(settings, linger_ms=linger_ms, batch_size=256 * 1024, acks="all")

    def stream_consumer(self, settings: StreamSettings, client_id: str) -> Consumer:
        """The stream's group member: manual commits, micro-batch sized polls, the settings' session timeout."""
        return self.consumer(
            settings,
            group_id=settings.consumer_group,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.stream_batch_events,
            fetch_max_wait_ms=min(settings.stream_batch_ms, 500),
            session_timeout_ms=settings.stream_session_timeout_ms,
            heartbeat_interval_ms=max(1000, settings.stream_session_timeout_ms // 4),
            max_poll_interval_ms=300_000,
            # exactly once: an input written in transactions is read only once they commit
            isolation_level="read_committed" if settings.stream_guarantee == "exactly-once" else "read_uncommitted",
        )

    def label_consumer(self, settings: StreamSettings, topic: str, *, commit_timeout_ms: int) -> Consumer:
        """The label sink's group member (its own group), reading committed labels only."""
        return self.consumer(
            settings,
            topic,
            group_id=f"{settings.consumer_group}-labels",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # labels written in transactions count once committed
            # A commit waits this long at most (kafka-python's default is five minutes): with the broker
            # away, the files are kept, the commit is retried at the next flush, and polling goes on.
            request_timeout_ms=commit_timeout_ms,
        )

    def stream_producer(self, settings: StreamSettings, client_id: str, **options: Any) -> Producer:
        """The stream's results producer: acknowledged by all replicas, retried up to the delivery timeout."""
        return self.raw_producer(
            settings,
            client_id=f"{client_id}-producer",
            acks="all",
            linger_ms=2,
            batch_size=256 * 1024,
            delivery_timeout_ms=settings.stream_delivery_timeout_ms,
            request_timeout_ms=min(30_000, settings.stream_delivery_timeout_ms - 2),
            **options,
        )

    def transactions(self, settings: StreamSettings, client_id: str, stopping: threading.Event) -> Transactions:
        """The exactly-once stream's transactional producer (registered before this returns)."""
        return Transactions(
            settings, client_id, stopping, lambda **options: self.stream_producer(settings, client_id, **options)
        )
