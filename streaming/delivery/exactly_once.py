"""Exactly once: a short window of batches and the input offsets after them, in one Kafka transaction."""

from __future__ import annotations

import logging
import threading
import time

from streaming.delivery.base import TRANSACTION_LINGER_S, Guarantee, StreamParts, to_commit
from streaming.ledger import Partition, earliest_firsts, merge_earliest, span
from streaming.rebalance import AbortOnRevoke
from streaming.transport.base import Producer, ProducerFenced, Record, TopicPartition, Transactions, TransportError

log = logging.getLogger("scorepipe.stream")


class ExactlyOnce(Guarantee):
    """The batches of a short window and the input offsets after them, committed in one transaction."""

    def __init__(self, parts: StreamParts, *, client_id: str, transactions: Transactions | None = None) -> None:
        super().__init__(parts)
        self.transactions = transactions or parts.transport.transactions(parts.settings, client_id, self._stopping)
        self._transaction_started = 0.0
        # kafka-python revokes partitions on its IO thread, while the loop runs; the lock keeps a
        # transaction's sends and commit apart from the abort a revocation makes.
        self._lock = threading.Lock()
        self._revocations = 0
        self._aborted_from: dict[Partition, int] = {}  # where an aborted transaction's batches began
        self.listener = AbortOnRevoke(self._abort_on_revoke, self._seek_returned)

    @property
    def producer(self) -> Producer:
        return self.transactions.producer

    def mark(self) -> int:
        return self._revocations

    def send(self, records: list[Record], mark: int) -> None:
        """The batch joins the open transaction, unless partitions were revoked since it was polled."""
        first, after = span((r.topic, r.partition, r.offset) for r in records)
        for topic in self.outputs.topics:
            self.same_partition_count(topic)  # may ask the broker: not while holding the lock
        error: TransportError | None = None
        with self._lock:
            stale = self._revocations != mark  # polled before a revocation: maybe not ours now
            if not stale:
                try:
                    if not self.transactions.open:
                        self._transaction_started = time.monotonic()
                    self.transactions.begin()
                    with self.metrics.batch_duration.time():
                        account = self.process(records)
                    self._hand_to_ledger(first, after, account)
                except TransportError as exc:  # refused by an ACL, or the transaction could not begin
                    error = exc
        if stale:
            self._read_from_committed(set(first))
        elif error is not None:
            self._abort_and_rewind(error, dict(first))

    def settle(self, *, polled_nothing: bool) -> int:
        """Commit at the in-flight bound, when a poll brings nothing, or once the transaction is this old."""
        if not len(self.ledger):
            return 0
        age = time.monotonic() - self._transaction_started
        if polled_nothing or len(self.ledger) >= self.settings.stream_max_in_flight or age >= TRANSACTION_LINGER_S:
            return self._commit()
        return 0

    def finish(self) -> None:
        self._commit()

    def close(self) -> None:
        self.transactions.close(timeout=10)

    def _commit(self) -> int:
        """Commit the open transaction: its batches' results and the offsets after them, or none of it."""
        error: TransportError | None = None
        with self._lock:
            batches, after = self.ledger.take_all()
            if not batches:
                return 0
            try:
                self.transactions.commit(to_commit(after), self.consumer)
            except TransportError as exc:
                error = exc
            else:
                self.ledger.committed(after)
        if error is not None:
            self._abort_and_rewind(error, earliest_firsts(batches))
            return 0
        for batch in batches:
            batch.on_delivered()
        self._delivered()
        return len(batches)

    def _abort_and_rewind(self, error: BaseException, rewind: dict[Partition, int]) -> None:
        """Abort (or, after a fatal error, replace the producer) and read the aborted batches again."""
        with self._lock:
            merge_earliest(rewind, self.ledger.drop_all())
            if isinstance(error, ProducerFenced):
                log.error(
                    "transactional producer %s cannot go on (%s); starting a new one (is another member "
                    "using the same --client-id?)",
                    self.transactions.transactional_id,
                    error,
                )
                self.transactions.replace()
            else:
                self.transactions.abort()
        self._same_partitions.clear()
        # A commit that timed out may still have been carried out by the broker (offsets and results
        # together): where to read again from is what the group has committed, not what was sent.
        self.read_again_from({**rewind, **self.committed_positions(set(rewind))})
        self._back_off(self._failure_reason(error, "transaction aborted"), "re-reading from the last committed offsets")

    def _abort_on_revoke(self, leaving: set[TopicPartition]) -> None:
        """Partitions move: the open transaction is aborted; the next owner reads from the committed offsets.

        The partitions this member keeps are read again from where the aborted transaction began,
        now; those leaving, if they come back (``_seek_returned``).
        """
        with self._lock:  # waits for a commit under way (bounded by its timeout)
            self._revocations += 1
            dropped = self.ledger.drop_all()
            if self.transactions.open:
                self.transactions.abort()
            kept = {(tp.topic, tp.partition) for tp in self.consumer.assignment()} - {
                (tp.topic, tp.partition) for tp in leaving
            }
            merge_earliest(self._aborted_from, {p: o for p, o in dropped.items() if p not in kept})
        self.read_again_from({p: o for p, o in dropped.items() if p in kept})
        if dropped:
            log.info("rebalance: aborted the open transaction (%d partition(s) to be read again)", len(dropped))

    def _seek_returned(self, assigned: set[TopicPartition]) -> None:
        """Partitions back after a revocation are read again from where the aborted transaction began."""
        with self._lock:
            returned, self._aborted_from = self._aborted_from, {}
        for tp in assigned:
            offset = returned.get((tp.topic, tp.partition))
            if offset is not None:
                self.consumer.seek(tp, offset)

    def _read_from_committed(self, partitions: set[Partition]) -> None:
        """Read partitions still assigned again from their committed offsets (or the start, if none)."""
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        keep = partitions & assigned
        committed = self.committed_positions(keep)
        self.read_again_from(committed)
        for p in keep - committed.keys():
            self.consumer.seek_to_beginning(TopicPartition(*p))
        log.info("a batch polled before a rebalance was dropped; %d partition(s) read again", len(keep))
