"""Topics: creating the stream's topics, and reading what is on them and what a group committed.

Every client comes from ``streaming.clients``. The readers here wait on offsets, never on time:
``read_topic`` reads each partition up to the end offsets it saw when it started, and
``committed_offsets`` says how far a group has got, which is what "every event handled" means
when duplicates are allowed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from kafka import TopicPartition
from kafka.admin import NewTopic
from kafka.errors import AuthorizationError, KafkaError, TopicAlreadyExistsError

from scoring import SinkError, SourceError
from streaming.clients import kafka_admin, kafka_consumer
from streaming.settings import StreamSettings

log = logging.getLogger("scorepipe.topics")


def ensure_topics(settings: StreamSettings, *names: str) -> None:
    """Create the stream's topics (features, predictions, dead letters, or ``names``) if missing."""
    wanted = names or (settings.features_topic, settings.predictions_topic, settings.dlq_topic)
    new: list[NewTopic] = []
    try:
        admin = kafka_admin(settings, request_timeout_ms=15_000)
    except KafkaError as exc:
        raise SinkError(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(n, settings.topic_partitions, 1) for n in wanted if n not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them first
                admin.create_topics(new)
    except AuthorizationError as exc:
        # A secured cluster's topics are often made by its operators, and a client may not even
        # see a topic it cannot describe: the clients themselves name what they are refused.
        log.warning(
            "not allowed to create or list topics %s (%s; Kafka ACLs): using them as they are",
            ", ".join(n.name for n in new) if new else ", ".join(wanted),
            type(exc).__name__,
        )
    finally:
        admin.close()


def end_offsets(settings: StreamSettings, topic: str) -> dict[int, int]:
    """Partition -> end offset (the next offset to be written) of ``topic``; {} if it does not exist."""
    consumer = kafka_consumer(settings)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return {tp.partition: int(o) for tp, o in consumer.end_offsets(partitions).items()} if partitions else {}
    finally:
        consumer.close()


def count_messages(settings: StreamSettings, topic: str) -> int:
    """Messages ever written to ``topic`` (duplicates included): the sum of its end offsets."""
    return sum(end_offsets(settings, topic).values())


def committed_offsets(
    settings: StreamSettings, topic: str, group: str | None = None, *, timeout: float = 30.0
) -> dict[int, int]:
    """Partition -> offset the group (default: the settings' group) committed on ``topic``; absent if none.

    A broker that just started has no group coordinator for a moment (a retriable error): asked
    again until ``timeout``, after which the error is raised.
    """
    group = group or settings.consumer_group
    deadline = time.monotonic() + timeout
    admin = kafka_admin(settings)
    try:
        while True:
            try:
                offsets = admin.list_group_offsets(group)[group]
                break
            except KafkaError as exc:
                if not exc.retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        admin.close()
    return {tp.partition: o.offset for tp, o in offsets.items() if tp.topic == topic and o.offset >= 0}


def assigned_partitions(settings: StreamSettings, group: str | None = None, *, member: str | None = None) -> set[int]:
    """Partitions of the features topic the group's members (or the one whose client id is ``member``) hold now.

    Empty while the group is still joining or rebalancing.
    """
    group = group or settings.consumer_group
    admin = kafka_admin(settings)
    try:
        described = admin.describe_groups([group])[group]
    except KafkaError as exc:
        if exc.retriable:  # no coordinator yet: nobody holds anything
            return set()
        raise
    finally:
        admin.close()
    if described.get("group_state") != "Stable":
        return set()
    return {
        p
        for found in described.get("members") or []
        if member is None or found.get("client_id") == member
        for topic in (found.get("member_assignment") or {}).get("assigned_partitions", [])
        if topic["topic"] == settings.features_topic
        for p in topic["partitions"]
    }


def all_committed(settings: StreamSettings, topic: str | None = None, group: str | None = None) -> bool:
    """Whether the group has committed every message now on ``topic`` (default: the features topic)."""
    topic = topic or settings.features_topic
    ends = end_offsets(settings, topic)
    done = committed_offsets(settings, topic, group)
    return bool(ends) and all(done.get(p, 0) >= end for p, end in ends.items())


def read_topic(settings: StreamSettings, topic: str, *, timeout: float = 60.0) -> list[Any]:
    """Every message on ``topic`` now: each partition read from its start to the end offset seen first.

    Only committed messages: results of an exactly-once stream are read as ``read_committed``
    (what an aborted transaction wrote is skipped; for other writers it makes no difference).
    Raises ``SourceError`` if the messages up to those offsets cannot be read within ``timeout``.
    """
    consumer = kafka_consumer(
        settings, enable_auto_commit=False, auto_offset_reset="earliest", isolation_level="read_committed"
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            return []
        ends = consumer.end_offsets(partitions)
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        messages: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                behind = {tp.partition: ends[tp] - consumer.position(tp) for tp in partitions}
                raise SourceError(f"{topic}: messages still unread after {timeout:.0f} s: {behind}")
            for tp, records in consumer.poll(timeout_ms=300).items():
                messages.extend(r for r in records if r.offset < ends[tp])
        return messages
    finally:
        consumer.close()


def distinct_keys(settings: StreamSettings, topic: str) -> set[bytes]:
    """The distinct message keys on ``topic`` now (event ids, for predictions and dead letters)."""
    return {m.key for m in read_topic(settings, topic)}
