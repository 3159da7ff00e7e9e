"""confluent-kafka's ``Consumer`` behind the transport's ``Consumer``: records, rebalances, commits, positions.

librdkafka's semantics differ from kafka-python's in a few places, all absorbed here:

- A message is read through methods (``msg.value()``); ``MessageRecord`` gives the stream the
  ``Record`` fields as attributes, read from the message once.
- Rebalance callbacks run before librdkafka applies the assignment, and a partition cannot be
  sought until it is fetched: a seek asked for inside ``on_partitions_assigned`` becomes the
  partition's start offset in the (incremental) assignment made right after the listener returns.
- An asynchronous commit's outcome arrives on the ``on_commit`` callback, in no promised order:
  each is matched to its request by the offsets it committed.
- ``position`` is unknown (``OFFSET_INVALID``) until a partition is fetched; it then falls back,
  as kafka-python's does, to the committed offset, else the partition's start (every consumer here
  resets to the earliest offset).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, KafkaError, KafkaException
from confluent_kafka import Consumer as RdKafkaConsumer
from confluent_kafka import TopicPartition as KafkaPartition

from streaming.transport.base import CommitCallback, RebalanceListener, Record, TopicPartition
from streaming.transport.confluent.errors import from_error, translate, translated

log = logging.getLogger("scorepipe.kafka")
METADATA_TIMEOUT_S = 10.0
OFFSETS_TIMEOUT_S = 10.0
IGNORED = {KafkaError._PARTITION_EOF}


class MessageRecord:
    """One consumed message with the ``Record`` fields as attributes (read from the message once)."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, message: Any) -> None:
        self.topic: str = message.topic()
        self.partition: int = message.partition()
        self.offset: int = message.offset()
        self.key: bytes | None = message.key()
        self.value: bytes | None = message.value()
        self.headers: Sequence[tuple[str, bytes]] | None = message.headers()
        self.timestamp: int = message.timestamp()[1]


def partitions(found: Iterable[Any]) -> set[TopicPartition]:
    return {TopicPartition(tp.topic, tp.partition) for tp in found}


def to_commit(offsets: Mapping[TopicPartition, int]) -> list[KafkaPartition]:
    return [KafkaPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]


class Consumer:
    """One librdkafka consumer; ``config`` is librdkafka's, with this adapter's callbacks added."""

    @translated
    def __init__(self, config: dict[str, Any]) -> None:
        self._commits: dict[frozenset[tuple[str, int, int]], list[CommitCallback]] = {}
        self._lock = threading.Lock()
        self._paused: set[TopicPartition] = set()
        self._assigning: set[TopicPartition] | None = None  # inside on_assign: seeks become start offsets
        self._starts: dict[TopicPartition, int] = {}
        self._from_start: set[TopicPartition] = set()  # partitions sent to their start by a seek
        self._refused: set[str] = set()
        self.client = RdKafkaConsumer({**config, "on_commit": self._on_commit})

    # -- group membership ------------------------------------------------------------------

    @translated
    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        def assigned(_: Any, found: list[Any]) -> None:
            self._assigning, self._starts = partitions(found), {}
            try:
                listener.on_partitions_assigned(set(self._assigning))
            finally:
                chosen = [
                    KafkaPartition(tp.topic, tp.partition, self._starts.get(tp, OFFSET_INVALID))
                    for tp in self._assigning
                ]
                self._assigning = None
                self.client.incremental_assign(chosen)

        def revoked(_: Any, found: list[Any]) -> None:
            gone = partitions(found)
            try:
                listener.on_partitions_revoked(gone)
            finally:
                self._paused -= gone
                self.client.incremental_unassign(found)

        def lost(_: Any, found: list[Any]) -> None:
            gone = partitions(found)
            try:
                listener.on_partitions_lost(gone)
            finally:
                self._paused -= gone
                self.client.incremental_unassign(found)

        self.client.subscribe(topics, on_assign=assigned, on_revoke=revoked, on_lost=lost)

    @translated
    def subscribe_plain(self, topics: list[str]) -> None:
        """Subscribed with no listener: librdkafka applies each assignment itself."""
        self.client.subscribe(topics)

    @translated
    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        self.client.assign([KafkaPartition(tp.topic, tp.partition) for tp in partitions])

    # -- reading ---------------------------------------------------------------------------

    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[Record]:
        """What is buffered, as soon as anything is (up to ``max_records``), waiting up to ``timeout_ms`` for it.

        librdkafka's ``consume(n, timeout)`` waits for ``n`` messages or its timeout (in 200 ms
        slices): a quiet stream's event would wait out the slice. The first message is waited for
        alone (``poll``), then what is already buffered is taken without waiting, as kafka-python's
        ``poll`` does.
        """
        try:
            first = self.client.poll(timeout_ms / 1000)
            if first is None:
                return []
            messages = [first, *self.client.consume((max_records or 500) - 1, 0)] if max_records != 1 else [first]
        except KafkaException as exc:
            raise translate(exc) from exc
        records: list[Record] = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(MessageRecord(message))
            elif error.code() not in IGNORED:
                self._message_error(message, error)
        return records

    def _message_error(self, message: Any, error: KafkaError) -> None:
        """A message carrying an error: a refused topic is remembered (and raised), the rest logged."""
        if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            self._refused.add(message.topic() or "")
            raise from_error(error)
        if error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
            raise from_error(error)
        failure = from_error(error)
        if not failure.retriable:
            log.warning("consumer: %s", failure)

    def assignment(self) -> set[TopicPartition]:
        return partitions(self.client.assignment())

    def refused_topics(self) -> set[str]:
        return set(self._refused)

    # -- positions -------------------------------------------------------------------------

    @translated
    def seek(self, partition: TopicPartition, offset: int) -> None:
        if offset == OFFSET_BEGINNING:
            self._from_start.add(partition)  # its position is the log's start until a record is fetched
        else:
            self._from_start.discard(partition)
        if self._assigning is not None and partition in self._assigning:
            self._starts[partition] = offset  # not fetched yet: it starts there
            return
        try:
            self.client.seek(KafkaPartition(partition.topic, partition.partition, offset))
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._STATE:
                raise
            # Assigned but not fetching yet: assigning it again at the offset starts it there.
            self.client.incremental_unassign([KafkaPartition(partition.topic, partition.partition)])
            self.client.incremental_assign([KafkaPartition(partition.topic, partition.partition, offset)])

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions or tuple(self.assignment()):
            self.seek(tp, OFFSET_BEGINNING)

    @translated
    def position(self, partition: TopicPartition, timeout_ms: int | None = None) -> int:
        found = self.client.position([KafkaPartition(partition.topic, partition.partition)])[0]
        if found.offset >= 0:
            return int(found.offset)
        # Sent to the start by a seek: the group's committed offset has no say (and asking the group
        # coordinator could fail while it moves, as after a broker restart).
        committed = None if partition in self._from_start else self.committed(partition)
        if committed is not None:
            return committed
        low, _ = self.client.get_watermark_offsets(
            KafkaPartition(partition.topic, partition.partition),
            timeout=(timeout_ms / 1000) if timeout_ms else OFFSETS_TIMEOUT_S,
            cached=False,
        )
        return int(low)  # every consumer here resets to the earliest offset

    @translated
    def committed(self, partition: TopicPartition) -> int | None:
        found = self.client.committed([KafkaPartition(partition.topic, partition.partition)], timeout=OFFSETS_TIMEOUT_S)
        if found[0].error is not None:
            raise from_error(found[0].error)
        return None if found[0].offset < 0 else int(found[0].offset)

    @translated
    def end_offsets(
        self, partitions: Iterable[TopicPartition], timeout_ms: int | None = None
    ) -> dict[TopicPartition, int]:
        """The end of each partition: the last stable offset under ``read_committed``, else the high watermark."""
        timeout = (timeout_ms / 1000) if timeout_ms else OFFSETS_TIMEOUT_S
        return {
            TopicPartition(tp.topic, tp.partition): int(
                self.client.get_watermark_offsets(
                    KafkaPartition(tp.topic, tp.partition), timeout=timeout, cached=False
                )[1]
            )
            for tp in partitions
        }

    @translated
    def partitions_for_topic(self, topic: str) -> set[int]:
        metadata = self.client.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return set()
        return set(metadata.partitions)

    # -- committing ------------------------------------------------------------------------

    @translated
    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp in self.client.commit(offsets=to_commit(offsets), asynchronous=False) or ():
            if tp.error is not None:
                raise from_error(tp.error)

    @translated
    def commit_async(self, offsets: Mapping[TopicPartition, int], callback: CommitCallback) -> None:
        key = frozenset((tp.topic, tp.partition, o) for tp, o in offsets.items())
        with self._lock:
            self._commits.setdefault(key, []).append(callback)
        try:
            self.client.commit(offsets=to_commit(offsets), asynchronous=True)
        except KafkaException:
            with self._lock:
                self._commits[key].remove(callback)
            raise

    def _on_commit(self, error: KafkaError | None, committed: list[Any]) -> None:
        """Librdkafka's outcome of a commit, matched to the request by its offsets."""
        key = frozenset((tp.topic, tp.partition, tp.offset) for tp in committed)
        with self._lock:
            waiting = self._commits.get(key)
            callback = waiting.pop(0) if waiting else None
            if waiting == []:
                del self._commits[key]
        if callback is None:
            return
        failed = error or next((tp.error for tp in committed if tp.error is not None), None)
        callback(None if failed is None else from_error(failed))

    # -- flow control ----------------------------------------------------------------------

    def pause(self, *partitions: TopicPartition) -> None:
        self.client.pause([KafkaPartition(tp.topic, tp.partition) for tp in partitions])
        self._paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.client.resume([KafkaPartition(tp.topic, tp.partition) for tp in partitions])
        self._paused -= set(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused) & self.assignment()

    def group_metadata(self) -> Any:
        return self.client.consumer_group_metadata()

    @translated
    def close(self) -> None:
        self.client.close()


__all__ = ["Consumer", "MessageRecord"]
