"""The one Kafka client factory: every consumer, producer and admin client of scorepipe is built here.

Connection settings (brokers, timeouts, and anything a secured cluster needs later) come from one
``Settings`` object, so they reach every client at once: the stream's consumer and producer, the
demo producer, the label sink, topic creation, ``scorepipe status``, the demo and the benchmarks.
Callers pass only what is particular to their use (group, batch sizes, acks).
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

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
