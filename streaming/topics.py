"""Topics: creating the stream's topics, and reading what is on them and what a group committed.

Every client comes from the settings' transport (``streaming.transport``). The readers here wait
on offsets, never on time: ``read_topic`` reads each partition up to the end offsets it saw when
it started, and ``committed_offsets`` says how far a group has got, which is what "every event handled" means
when duplicates are allowed.
"""

from __future__ import annotations

import logging
import time

from scoring import SinkError, SourceError
from streaming.settings import KafkaSettings, StreamSettings
from streaming.transport import transport_for
from streaming.transport.base import NotAuthorized, Record, TopicPartition, TransportError

log = logging.getLogger("scorepipe.topics")


def ensure_topics(settings: StreamSettings, *names: str) -> None:
    """Create the stream's topics (features, predictions, dead letters, or ``names``) if missing."""
    wanted = names or (settings.features_topic, settings.predictions_topic, settings.dlq_topic)
    new: list[str] = []
    try:
        admin = transport_for(settings).admin(settings, request_timeout_ms=15_000)
    except TransportError as exc:
        raise SinkError(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc}") from exc
    try:
        existing = admin.list_topics()
        new = [n for n in wanted if n not in existing]
        admin.create_topics(new, settings.topic_partitions)
    except NotAuthorized as exc:
        # A secured cluster's topics are often made by its operators, and a client may not even
        # see a topic it cannot describe: the clients themselves name what they are refused.
        log.warning(
            "not allowed to create or list topics %s (%s; Kafka ACLs): using them as they are",
            ", ".join(new or wanted),
            str(exc).split(":", 1)[0],
        )
    except TransportError as exc:
        raise SinkError(f"cannot create topics on Kafka at {settings.kafka_bootstrap_servers}: {exc}") from exc
    finally:
        admin.close()


def end_offsets(settings: KafkaSettings, topic: str) -> dict[int, int]:
    """Partition -> end offset (the next offset to be written) of ``topic``; {} if it does not exist."""
    consumer = transport_for(settings).reader(settings, read_committed=False)  # high watermarks
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {tp.partition: o for tp, o in consumer.end_offsets(partitions).items()} if partitions else {}
    finally:
        consumer.close()


def count_messages(settings: KafkaSettings, topic: str) -> int:
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
    admin = transport_for(settings).admin(settings)
    try:
        while True:
            try:
                offsets = admin.group_offsets(group, topic)
                break
            except TransportError as exc:
                if not exc.retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        admin.close()
    return {tp.partition: offset for tp, offset in offsets.items()}


def assigned_partitions(settings: StreamSettings, group: str | None = None, *, member: str | None = None) -> set[int]:
    """Partitions of the features topic the group's members (or the one whose client id is ``member``) hold now.

    Empty while the group is still joining or rebalancing.
    """
    group = group or settings.consumer_group
    admin = transport_for(settings).admin(settings)
    try:
        described = admin.describe_group(group)
    except TransportError as exc:
        if exc.retriable:  # no coordinator yet: nobody holds anything
            return set()
        raise
    finally:
        admin.close()
    if described.state != "Stable":
        return set()
    return {
        tp.partition
        for found in described.members
        if member is None or found.client_id == member
        for tp in found.assigned
        if tp.topic == settings.features_topic
    }


def all_committed(settings: StreamSettings, topic: str | None = None, group: str | None = None) -> bool:
    """Whether the group has committed every message now on ``topic`` (default: the features topic)."""
    topic = topic or settings.features_topic
    ends = end_offsets(settings, topic)
    done = committed_offsets(settings, topic, group)
    return bool(ends) and all(done.get(p, 0) >= end for p, end in ends.items())


def read_topic(settings: KafkaSettings, topic: str, *, timeout: float = 60.0) -> list[Record]:
    """Every message on ``topic`` now: each partition read from its start to the end offset seen first.

    Only committed messages: results of an exactly-once stream are read as ``read_committed``
    (what an aborted transaction wrote is skipped; for other writers it makes no difference).
    Raises ``SourceError`` if the messages up to those offsets cannot be read within ``timeout``.
    """
    consumer = transport_for(settings).reader(settings)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        if not partitions:
            return []
        ends = consumer.end_offsets(partitions)
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        messages: list[Record] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                behind = {tp.partition: ends[tp] - consumer.position(tp) for tp in partitions}
                raise SourceError(f"{topic}: messages still unread after {timeout:.0f} s: {behind}")
            messages.extend(r for r in consumer.poll(300) if r.offset < ends[TopicPartition(r.topic, r.partition)])
        return messages
    finally:
        consumer.close()


def distinct_keys(settings: KafkaSettings, topic: str) -> set[bytes | None]:
    """The distinct message keys on ``topic`` now (event ids, for predictions and dead letters)."""
    return {m.key for m in read_topic(settings, topic)}
