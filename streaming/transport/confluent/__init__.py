"""The confluent transport: every Kafka client scorepipe builds, on confluent-kafka (librdkafka).

An optional second client library behind the same boundary as kafka-python (``pip install
scorepipe[confluent]``, ``SCOREPIPE_KAFKA_CLIENT=confluent`` or ``--kafka-client confluent``):
librdkafka fetches, batches and sends in C, so a core scores about twice the events. The loop,
deliveries, sinks and CLI are the same; everything of confluent-kafka stays in this package.
Connection settings reach every client from ``options``; each factory below adds only what is
particular to its use.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from streaming.settings import KafkaSettings, StreamSettings
from streaming.transport.confluent.admin import Admin
from streaming.transport.confluent.consumer import Consumer
from streaming.transport.confluent.options import client_config
from streaming.transport.confluent.producer import Producer
from streaming.transport.confluent.transactions import Transactions

__all__ = ["ConfluentTransport"]
# A key goes to the partition the Java client and kafka-python would choose (librdkafka's own
# default, consistent_random, hashes keys differently): one key, one partition, whichever client wrote it.
PARTITIONER = "murmur2_random"


class ConfluentTransport:
    """Builds confluent-kafka clients behind the transport's interfaces."""

    name = "confluent"

    def admin(
        self, settings: KafkaSettings, *, request_timeout_ms: int = 30_000, bootstrap_timeout_ms: int | None = None
    ) -> Admin:
        config = client_config(settings, "admin", {"socket.timeout.ms": request_timeout_ms})
        return Admin(config, timeout=(bootstrap_timeout_ms or request_timeout_ms) / 1000)

    def reader(
        self, settings: KafkaSettings, *, read_committed: bool = True, request_timeout_ms: int | None = None
    ) -> Consumer:
        """A consumer in no group of its own (librdkafka needs a group id: this one never joins or commits)."""
        options: dict[str, Any] = {
            "group.id": f"scorepipe-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        }
        if request_timeout_ms is not None:
            options["socket.timeout.ms"] = request_timeout_ms
        return Consumer(client_config(settings, "reader", options))

    def producer(self, settings: KafkaSettings, *, linger_ms: int = 10) -> Producer:
        """A producer of events (the demo's, the benchmarks'), acknowledged by all replicas."""
        return Producer(
            client_config(settings, "producer", {"linger.ms": linger_ms, "acks": "all", "partitioner": PARTITIONER})
        )

    def stream_consumer(self, settings: StreamSettings, client_id: str) -> Consumer:
        """The stream's group member: manual commits, cooperative-sticky hand-over, the settings' session timeout."""
        return Consumer(
            client_config(
                settings,
                "consumer",
                {
                    "group.id": settings.consumer_group,
                    "client.id": client_id,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    "partition.assignment.strategy": "cooperative-sticky",
                    "fetch.wait.max.ms": min(settings.stream_batch_ms, 500),
                    "session.timeout.ms": settings.stream_session_timeout_ms,
                    "heartbeat.interval.ms": max(1000, settings.stream_session_timeout_ms // 4),
                    "max.poll.interval.ms": 300_000,
                    # exactly once: an input written in transactions is read only once they commit
                    "isolation.level": (
                        "read_committed" if settings.stream_guarantee == "exactly-once" else "read_uncommitted"
                    ),
                },
            )
        )

    def label_consumer(self, settings: StreamSettings, topic: str, *, commit_timeout_ms: int) -> Consumer:
        """The label sink's group member (its own group), reading committed labels only."""
        consumer = Consumer(
            client_config(
                settings,
                "labels",
                {
                    "group.id": f"{settings.consumer_group}-labels",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                    # A request (a commit among them) waits this long at most: with the broker away, the
                    # files are kept, the commit is retried at the next flush, and polling goes on.
                    "socket.timeout.ms": commit_timeout_ms,
                },
            )
        )
        consumer.subscribe_plain([topic])
        return consumer

    def stream_producer(self, settings: StreamSettings, client_id: str, **options: Any) -> Producer:
        """The stream's results producer: acknowledged by all replicas, idempotent, up to the delivery timeout."""
        return Producer(
            client_config(
                settings,
                "producer",
                {
                    "client.id": f"{client_id}-producer",
                    "acks": "all",
                    "partitioner": PARTITIONER,
                    "enable.idempotence": True,
                    "linger.ms": 2,
                    "batch.size": 1_000_000,
                    "delivery.timeout.ms": settings.stream_delivery_timeout_ms,
                    "request.timeout.ms": min(30_000, settings.stream_delivery_timeout_ms - 2),
                    **options,
                },
            )
        )

    def transactions(self, settings: StreamSettings, client_id: str, stopping: threading.Event) -> Transactions:
        """The exactly-once stream's transactional producer (registered before this returns)."""
        return Transactions(
            settings, client_id, stopping, lambda **options: self.stream_producer(settings, client_id, **options)
        )
