"""What both delivery guarantees share: the ledger, the outputs, back-off, rewinds, the partition check."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitoring.metrics import ScoringMetrics
from streaming.ledger import OffsetLedger, Partition
from streaming.outputs import Outputs
from streaming.readiness import StreamReadiness
from streaming.refusals import write_refusal
from streaming.settings import StreamSettings
from streaming.stats import StreamStats
from streaming.transport import Transport
from streaming.transport.base import Consumer, NotAuthorized, Producer, Record, TopicPartition, TransportError

log = logging.getLogger("scorepipe.stream")
ACK_TIMEOUT_S = 60.0  # on stop: the longest wait for the batches in flight
BACKPRESSURE_WAIT_S = 1.0  # at the in-flight bound: one wait for the oldest batch before polling again
TRANSACTION_LINGER_S = 0.2  # exactly-once: the oldest a transaction gets before it is committed
STUCK_MARGIN_S = 5.0  # past 1.5 x the delivery timeout and this, a batch with no outcome counts as failed

Process = Callable[[list[Record]], Callable[[], None]]
"""Scores a batch of records into the outputs; returns what counts the batch once it is delivered."""


@dataclass(frozen=True)
class StreamParts:
    """What a delivery works with, built by the loop: transport, consumer, outputs, scoring step, what it reports to."""

    settings: StreamSettings
    transport: Transport
    consumer: Consumer
    outputs: Outputs
    process: Process
    stats: StreamStats
    metrics: ScoringMetrics
    readiness: StreamReadiness
    stopping: threading.Event  # set to stop: back-off waits end at once


class Guarantee:
    """What both guarantees share: the ledger, the outputs, back-off, rewinds and the partition check."""

    def __init__(self, parts: StreamParts) -> None:
        self.settings = parts.settings
        self.transport = parts.transport
        self.consumer = parts.consumer
        self.outputs = parts.outputs
        self.process = parts.process
        self.stats = parts.stats
        self.metrics = parts.metrics
        self.readiness = parts.readiness
        self._stopping = parts.stopping
        self.ledger = OffsetLedger()
        self._same_partitions: dict[str, bool] = {}
        self._retry_delay = 0.0

    @property
    def producer(self) -> Producer:
        raise NotImplementedError

    def mark(self) -> int:
        """A token taken before each poll and given back with its batch (exactly once: revocations so far)."""
        return 0

    def on_broker_answered(self) -> None:
        """The broker answers again after an outage (nothing to redo by default)."""

    def same_partition_count(self, topic: str) -> bool:
        """Whether ``topic`` has as many partitions as the input (then results keep their event's partition)."""
        if topic not in self._same_partitions:
            output = self.producer.partitions_for(topic)
            source = self.consumer.partitions_for_topic(self.settings.features_topic)
            self._same_partitions[topic] = bool(output) and output == source
        return self._same_partitions[topic]

    def read_again_from(self, offsets: dict[Partition, int]) -> None:
        """Read partitions still assigned to this member again from ``offsets`` (local only)."""
        assigned = self.consumer.assignment()
        for p, offset in offsets.items():
            if p in assigned:
                self.consumer.seek(TopicPartition(*p), offset)

    def committed_positions(self, partitions: set[Partition]) -> dict[Partition, int]:
        """The group's committed offsets for ``partitions`` (those it has), read from the broker."""
        positions: dict[Partition, int] = {}
        for p in partitions:
            try:
                offset = self.consumer.committed(TopicPartition(*p))
            except TransportError as exc:
                log.warning("cannot read the committed offset of %s[%d] (%s): reading again from sent offsets", *p, exc)
                continue
            if offset is not None:
                positions[p] = int(offset)
        return positions

    def _hand_to_ledger(self, first: dict[Partition, int], after: dict[Partition, int], account: Any) -> None:
        results, shadow = self.outputs.flush()

        def delivered() -> None:
            account()
            self.outputs.count_shadow_failures(shadow)

        self.ledger.add(first, after, results, delivered)
        self.metrics.in_flight.set(len(self.ledger))

    def _delivered(self) -> None:
        """A commit went through: the stream is healthy again."""
        self.stats.commits += 1
        self.readiness.send_error = None
        self._retry_delay = 0.0

    def _back_off(self, reason: str, then: str) -> None:
        """A batch failed: count it, say why on ``/readyz`` and in the log, and wait (doubling) before ``then``."""
        self.stats.send_failures += 1
        self.metrics.send_failures.inc()
        self.readiness.send_error = reason
        self._retry_delay = min(max(0.5, self._retry_delay * 2), self.settings.stream_retry_max_seconds)
        log.error("%s; %s in %.1f s", reason, then, self._retry_delay)
        self._stopping.wait(self._retry_delay)

    def _failure_reason(self, error: BaseException, what: str) -> str:
        """An ACL refusing a write is named as such (topic, user); any other error as ``what`` failed."""
        if isinstance(error, NotAuthorized) and error.resource != "transactional_id":
            return write_refusal(self.settings, error)
        if isinstance(error, TransportError):
            return f"{what}: {error}"  # the message names the client's own error
        return f"{what}: {type(error).__name__}: {error}"


def to_commit(offsets: dict[Partition, int]) -> dict[TopicPartition, int]:
    return {TopicPartition(*p): offset for p, offset in offsets.items()}
