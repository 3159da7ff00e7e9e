"""The stream's offset ledger: what may be committed, in order, and where to read again after a failure.

Pure bookkeeping, free of any Kafka client: partitions are any hashable key (kafka-python's
``TopicPartition`` is one) and a batch's delivery is anything with ``done()``, ``error()`` and
``wait(timeout)``. The loop feeds it; it answers:

- ``settle()``: the leading batches whose every result was acknowledged (to account and commit,
  in order), or, at the first batch with a failed send, where each partition must be read again
  from (that batch and every later one are dropped uncommitted: duplicates, never loss);
- ``hand_over(revoked)``: before partitions move to another member, the offsets safe to commit
  for them, and where to re-read from should they come straight back (``returned(assigned)``);
- ``positions``: the next offset delivered per partition (what a final commit and the lag use).

>>> ledger = OffsetLedger()
>>> class Acked:
...     def done(self): return True
...     def error(self): return None
...     def wait(self, timeout): pass
>>> ledger.add(*span([("t", 0, 5), ("t", 0, 6)]), Acked())
>>> ledger.settle().commit
{('t', 0): 7}
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

Partition = tuple[str, int]  # (topic, partition); kafka-python's TopicPartition is one


class Acknowledgements(Protocol):
    """The acknowledgements of one batch's results."""

    def done(self) -> bool:
        """Every result acknowledged or failed."""

    def error(self) -> BaseException | None:
        """The first send error, once done (None if every result was acknowledged)."""

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for ``done()``."""


@dataclass
class InFlight:
    """One micro-batch whose results were handed to the client; committable once all are acknowledged."""

    first: dict[Partition, int]  # first offset per partition: where to re-read from if a send fails
    after: dict[Partition, int]  # the offset to commit per partition (last + 1)
    delivery: Acknowledgements
    on_delivered: Callable[[], None] = lambda: None  # counts the batch once it is delivered
    sent_at: float = field(default_factory=time.monotonic)


class DeliveryStuck(Exception):  # noqa: N818 - reads as what happened, like the client's own errors
    """A batch neither acknowledged nor failed long after its client's own delivery timeout."""

    retriable = False  # the client that lost it is replaced, not trusted again


@dataclass
class Settled:
    """What ``settle`` found: batches delivered in order, offsets to commit, and a failure if one came next."""

    delivered: list[InFlight] = field(default_factory=list)
    commit: dict[Partition, int] = field(default_factory=dict)
    failure: BaseException | None = None
    rewind: dict[Partition, int] = field(default_factory=dict)  # after a failure: read again from here
    dropped: int = 0  # batches dropped uncommitted after a failure


def merge_earliest(into: dict[Partition, int], offsets: dict[Partition, int]) -> dict[Partition, int]:
    """``into`` with each partition's offset lowered to the one in ``offsets`` where that is earlier."""
    for p, offset in offsets.items():
        into[p] = min(into.get(p, offset), offset)
    return into


def earliest_firsts(batches: Iterable[InFlight]) -> dict[Partition, int]:
    """The first offset of each partition among ``batches``: where to read them all again from."""
    rewind: dict[Partition, int] = {}
    for batch in batches:
        merge_earliest(rewind, batch.first)
    return rewind


def span(offsets: Iterable[tuple[str, int, int]]) -> tuple[dict[Partition, int], dict[Partition, int]]:
    """(first offset, offset to commit) per partition of a batch's ``(topic, partition, offset)`` triples."""
    first: dict[Partition, int] = {}
    after: dict[Partition, int] = {}
    for topic, partition, offset in offsets:
        key = (topic, partition)
        if key not in first:
            first[key] = offset
        after[key] = offset + 1
    return first, after


class OffsetLedger:
    """Batches in flight in the order they were sent, and the offsets delivered per partition.

    Thread-safe: the rebalance listener may call ``hand_over`` from the client's IO thread.
    """

    def __init__(self) -> None:
        self._in_flight: deque[InFlight] = deque()
        self._lock = threading.Lock()
        self._rewind: dict[Partition, int] = {}
        self._commit_failed = False
        self.positions: dict[Partition, int] = {}

    def __len__(self) -> int:
        return len(self._in_flight)

    def oldest(self) -> InFlight | None:
        with self._lock:
            return self._in_flight[0] if self._in_flight else None

    def add(
        self,
        first: dict[Partition, int],
        after: dict[Partition, int],
        delivery: Acknowledgements,
        on_delivered: Callable[[], None] = lambda: None,
    ) -> None:
        with self._lock:
            self._in_flight.append(InFlight(dict(first), dict(after), delivery, on_delivered))

    def settle(self, stuck_after: float | None = None) -> Settled:
        """Pop the leading delivered batches; at the first failed one, drop it and every later one.

        With ``stuck_after`` (seconds), a leading batch still pending that long after it was sent
        counts as failed (``DeliveryStuck``): a client that never reports back must not stall the
        stream forever.
        """
        settled = Settled()
        with self._lock:
            while self._in_flight and self._in_flight[0].delivery.done():
                batch = self._in_flight[0]
                error = batch.delivery.error()
                if error is not None:
                    settled.failure = error
                    settled.dropped = len(self._in_flight)
                    settled.rewind = self._drop_all()
                    break
                self._in_flight.popleft()
                settled.delivered.append(batch)
                settled.commit.update(batch.after)
            oldest = self._in_flight[0] if self._in_flight else None
            waited = time.monotonic() - oldest.sent_at if oldest is not None else 0.0
            if settled.failure is None and stuck_after is not None and waited > stuck_after:
                settled.failure = DeliveryStuck(f"a batch sent {waited:.0f} s ago was neither acknowledged nor failed")
                settled.dropped = len(self._in_flight)
                settled.rewind = self._drop_all()
            self.positions.update(settled.commit)
            if settled.commit:
                self._commit_failed = False
        return settled

    def take_all(self) -> tuple[list[InFlight], dict[Partition, int]]:
        """Every batch in flight and the offsets after them: what one transaction commits together."""
        with self._lock:
            batches = list(self._in_flight)
            self._in_flight.clear()
        after: dict[Partition, int] = {}
        for batch in batches:
            after.update(batch.after)  # batches are in order: a later batch's offsets are higher
        return batches, after

    def committed(self, offsets: dict[Partition, int]) -> None:
        """Offsets committed another way (in a transaction): they are the positions now."""
        with self._lock:
            self.positions.update(offsets)

    def drop_all(self) -> dict[Partition, int]:
        """Forget every batch in flight; the first offset of each partition among them (to read again from)."""
        with self._lock:
            return self._drop_all()

    def drop_unacknowledged(self) -> int:
        """On stop, after the last wait: forget the batches still in flight (they will be read again)."""
        with self._lock:
            dropped = len(self._in_flight)
            self._in_flight.clear()
            return dropped

    def commit_failed(self) -> None:
        """An asynchronous commit was lost: ``commit_due`` asks for the positions to be committed again."""
        self._commit_failed = True

    def commit_due(self) -> dict[Partition, int]:
        """The positions to commit again if the last commit was lost and no newer one has been made."""
        with self._lock:
            if not self._commit_failed:
                return {}
            self._commit_failed = False
            return dict(self.positions)

    def hand_over(self, revoked: set[Partition], wait_seconds: float) -> dict[Partition, int]:
        """The offsets safe to commit for ``revoked`` partitions before they move to another member.

        Waits up to ``wait_seconds`` for their batches in flight; only acknowledged leading
        batches count. Delivered positions are included, since an asynchronous commit of them
        may have been lost. Undelivered batches leave a rewind point in case a partition returns.
        """
        with self._lock:
            deadline = time.monotonic() + wait_seconds
            for batch in self._in_flight:
                if revoked & batch.first.keys():
                    batch.delivery.wait(max(0.0, deadline - time.monotonic()))
            offsets = {p: self.positions[p] for p in revoked if p in self.positions}
            acknowledged = True
            for batch in self._in_flight:
                acknowledged = acknowledged and batch.delivery.done() and batch.delivery.error() is None
                for p in revoked & batch.first.keys():
                    if acknowledged:
                        offsets[p] = batch.after[p]
                    else:
                        self._rewind.setdefault(p, batch.first[p])
                    del batch.first[p], batch.after[p]
            for p in revoked:
                self.positions.pop(p, None)
            return offsets

    def lose(self, lost: set[Partition]) -> int:
        """Forget ``lost`` partitions without handing anything over: no offset of theirs is committed from here.

        Their batches in flight keep only their other partitions (whose results still count); the
        positions and rewind points of the lost ones go. Returns how many batches held any of them.
        """
        with self._lock:
            touched = 0
            for batch in self._in_flight:
                gone = lost & batch.first.keys()
                touched += bool(gone)
                for p in gone:
                    del batch.first[p], batch.after[p]
            for p in lost:
                self.positions.pop(p, None)
                self._rewind.pop(p, None)
            return touched

    def returned(self, assigned: set[Partition]) -> dict[Partition, int]:
        """Where partitions that came straight back after a revocation must be read from again."""
        with self._lock:
            seeks = {p: o for p, o in self._rewind.items() if p in assigned}
            self._rewind.clear()
            return seeks

    def _drop_all(self) -> dict[Partition, int]:
        rewind = earliest_firsts(self._in_flight)
        self._in_flight.clear()
        return rewind
