"""Kafka topic set-up and client construction, shared by the consumer, the producer and tools."""

from __future__ import annotations

import contextlib

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from scoring import Settings, SinkError


def ensure_topics(settings: Settings, *names: str) -> None:
    """Create the stream's topics (features, predictions, dead letters, or ``names``) if missing."""
    wanted = names or (settings.features_topic, settings.predictions_topic, settings.dlq_topic)
    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=15_000)
    except KafkaError as exc:
        raise SinkError(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(n, settings.topic_partitions, 1) for n in wanted if n not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them first
                admin.create_topics(new)
    finally:
        admin.close()


def count_messages(settings: Settings, topic: str) -> int:
    """Messages ever written to ``topic`` (the sum of its partitions' end offsets)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return int(sum(consumer.end_offsets(partitions).values())) if partitions else 0
    finally:
        consumer.close()
