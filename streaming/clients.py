"""The one Kafka client factory: every consumer, producer and admin client of scorepipe is built here.

Connection settings (brokers, timeouts, and anything a secured cluster needs later) come from one
``Settings`` object, so they reach every client at once: the stream's consumer and producer, the
demo producer, the label sink, topic creation, ``scorepipe status``, the demo and the benchmarks.
Callers pass only what is particular to their use (group, batch sizes, acks).
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError

from scoring import Settings


def connection_options(settings: Settings) -> dict[str, Any]:
    """Options every client shares: where the brokers are."""
    return {"bootstrap_servers": settings.kafka_bootstrap_servers}


def kafka_consumer(settings: Settings, *topics: str, **options: Any) -> KafkaConsumer:
    """A consumer of ``topics`` (or none, for ``assign``) with the settings' connection options."""
    return KafkaConsumer(*topics, **connection_options(settings), **options)


def kafka_producer(settings: Settings, **options: Any) -> KafkaProducer:
    """A producer with the settings' connection options."""
    return KafkaProducer(**connection_options(settings), **options)


def kafka_admin(settings: Settings, **options: Any) -> KafkaAdminClient:
    """An admin client with the settings' connection options."""
    return KafkaAdminClient(**connection_options(settings), **options)


def stream_consumer(settings: Settings, client_id: str) -> KafkaConsumer:
    """The stream's group member: manual commits, micro-batch sized polls, the settings' session timeout."""
    return kafka_consumer(
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
    )


def stream_producer(settings: Settings, client_id: str) -> KafkaProducer:
    """The stream's results producer: acknowledged by all replicas, retried up to the delivery timeout."""
    return kafka_producer(
        settings,
        client_id=f"{client_id}-producer",
        acks="all",
        linger_ms=2,
        batch_size=256 * 1024,
        delivery_timeout_ms=settings.stream_delivery_timeout_ms,
        request_timeout_ms=min(30_000, settings.stream_delivery_timeout_ms - 2),
    )


def close_producer(producer: KafkaProducer, timeout: float) -> bool:
    """Close ``producer`` within ``timeout`` seconds, dropping what it could not send; False if it dropped any.

    kafka-python 3.0's ``close`` flushes first and, when that times out, raises and leaves its
    sender thread running with the unsent records. Those records belong to batches the ledger
    has already given up on (they will be read again), so the sender is stopped as ``close``
    would have stopped it, and the producer is marked closed.
    """
    try:
        producer.close(timeout=timeout)
        return True
    except KafkaTimeoutError:
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        producer._closed = True  # what close() sets last; keeps its finalizer from flushing again
        return False
