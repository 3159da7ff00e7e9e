"""kafka-python's ``KafkaConsumer`` behind the transport's ``Consumer``: neutral partitions, translated errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka import TopicPartition as KafkaPartition
from kafka.structs import OffsetAndMetadata

from streaming.transport.base import CommitCallback, RebalanceListener, Record, TopicPartition
from streaming.transport.kafka_python.errors import translate, translated


def partitions(found: Iterable[Any]) -> set[TopicPartition]:
    return {TopicPartition(tp.topic, tp.partition) for tp in found}


def to_commit(offsets: Mapping[TopicPartition, int]) -> dict[KafkaPartition, OffsetAndMetadata]:
    """Offsets as kafka-python commits them (no metadata, no leader epoch)."""
    return {KafkaPartition(*tp): OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}


class _Listener(ConsumerRebalanceListener):
    """Hands kafka-python's rebalance callbacks to a transport listener, with neutral partitions."""

    def __init__(self, listener: RebalanceListener) -> None:
        self.listener = listener

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.listener.on_partitions_revoked(partitions(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.listener.on_partitions_assigned(partitions(assigned))

    def on_partitions_lost(self, lost: Any) -> None:
        self.listener.on_partitions_lost(partitions(lost))


class Consumer:
    """One ``KafkaConsumer``; records are kafka-python's own ``ConsumerRecord`` (it has every ``Record`` field)."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.client = consumer

    @translated
    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        self.client.subscribe(topics, listener=_Listener(listener))

    @translated
    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        self.client.assign([KafkaPartition(*tp) for tp in partitions])

    @translated
    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[Record]:
        polled = self.client.poll(timeout_ms=timeout_ms, max_records=max_records)
        return [record for records in polled.values() for record in records]

    def assignment(self) -> set[TopicPartition]:
        return partitions(self.client.assignment())

    def refused_topics(self) -> set[str]:
        """Subscribed topics the ACLs hide: kafka-python only logs them, then waits with no partitions."""
        cluster = getattr(getattr(self.client, "_client", None), "cluster", None)
        return set(getattr(cluster, "unauthorized_topics", ()) or ())

    @translated
    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.client.seek(KafkaPartition(*partition), offset)

    @translated
    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.client.seek_to_beginning(*(KafkaPartition(*tp) for tp in partitions))

    @translated
    def position(self, partition: TopicPartition, timeout_ms: int | None = None) -> int:
        return int(self.client.position(KafkaPartition(*partition), timeout_ms=timeout_ms))

    @translated
    def committed(self, partition: TopicPartition) -> int | None:
        offset = self.client.committed(KafkaPartition(*partition))
        return None if offset is None else int(offset)

    @translated
    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.client.commit(to_commit(offsets))

    @translated
    def commit_async(self, offsets: Mapping[TopicPartition, int], callback: CommitCallback) -> None:
        def done(_: Any, result: Any) -> None:
            callback(translate(result) if isinstance(result, BaseException) else None)

        self.client.commit_async(to_commit(offsets), callback=done)

    def pause(self, *partitions: TopicPartition) -> None:
        self.client.pause(*(KafkaPartition(*tp) for tp in partitions))

    def resume(self, *partitions: TopicPartition) -> None:
        self.client.resume(*(KafkaPartition(*tp) for tp in partitions))

    def paused(self) -> set[TopicPartition]:
        return partitions(self.client.paused())

    @translated
    def end_offsets(
        self, partitions: Iterable[TopicPartition], timeout_ms: int | None = None
    ) -> dict[TopicPartition, int]:
        found = self.client.end_offsets([KafkaPartition(*tp) for tp in partitions], timeout_ms=timeout_ms)
        return {TopicPartition(tp.topic, tp.partition): int(end) for tp, end in found.items()}

    @translated
    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.client.partitions_for_topic(topic) or ())

    def group_metadata(self) -> Any:
        return self.client.group_metadata()

    @translated
    def close(self) -> None:
        self.client.close()
