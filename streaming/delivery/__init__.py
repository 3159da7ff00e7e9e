"""The stream's two delivery guarantees, as objects the loop calls: at least once, and exactly once.

The loop polls, scores a micro-batch into the outputs and hands the batch to its ``Delivery``;
what happens then (when results count as delivered, when and how input offsets are committed,
what is read again after a failure or a rebalance) is the guarantee's alone:

- ``AtLeastOnce``: batches are pipelined; the offset ledger commits, in order, the leading batches
  whose every result was acknowledged. A failed send drops that batch and every later one and
  re-reads from its first offsets; a crash re-reads from the last commit. Duplicates, never loss.
- ``ExactlyOnce``: the batches of a short window and the input offsets after them commit in one
  Kafka transaction (the transport's ``Transactions``). A failure or a rebalance aborts it and reads
  again from the committed offsets: a ``read_committed`` reader sees every result exactly once.
"""

from __future__ import annotations

from typing import Protocol

from streaming.delivery.at_least_once import AtLeastOnce
from streaming.delivery.base import Process, StreamParts
from streaming.delivery.exactly_once import ExactlyOnce
from streaming.ledger import OffsetLedger
from streaming.transport.base import Producer, RebalanceListener, Record

__all__ = ["GUARANTEES", "AtLeastOnce", "Delivery", "ExactlyOnce", "Process", "StreamParts"]


class Delivery(Protocol):
    """What the loop asks of a delivery guarantee."""

    ledger: OffsetLedger  # the batches in flight

    @property
    def listener(self) -> RebalanceListener: ...  # subscribed with the input topic

    @property
    def producer(self) -> Producer: ...

    def mark(self) -> int: ...

    def send(self, records: list[Record], mark: int) -> None: ...

    def settle(self, *, polled_nothing: bool) -> int: ...

    def on_broker_answered(self) -> None: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...

    def same_partition_count(self, topic: str) -> bool: ...


GUARANTEES: dict[str, type[AtLeastOnce] | type[ExactlyOnce]] = {
    "at-least-once": AtLeastOnce,
    "exactly-once": ExactlyOnce,
}
"""Each ``stream_guarantee`` setting and the delivery that keeps it."""
