"""At least once: pipelined batches, committed in order once every result of theirs is acknowledged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from scoring import SinkError
from streaming.delivery.base import (
    ACK_TIMEOUT_S,
    BACKPRESSURE_WAIT_S,
    STUCK_MARGIN_S,
    Guarantee,
    StreamParts,
    to_commit,
)
from streaming.ledger import Partition, Settled, span
from streaming.rebalance import HandOverOnRevoke
from streaming.reconnect import rebuild_until_stopped
from streaming.refusals import write_refusal
from streaming.transport.base import NotAuthorized, Producer, Record, TransportError

log = logging.getLogger("scorepipe.stream")


class AtLeastOnce(Guarantee):
    """Pipelined batches; the ledger commits, in order, those whose every result was acknowledged."""

    def __init__(
        self, parts: StreamParts, *, client_id: str, new_producer: Callable[[], Producer] | None = None
    ) -> None:
        super().__init__(parts)
        settings = parts.settings
        self._new_producer = new_producer or (lambda: parts.transport.stream_producer(settings, client_id))
        self._producer = self._new_producer()
        # The producer fails a result by its delivery timeout; one that says nothing well past it is stuck.
        self._stuck_after = settings.stream_delivery_timeout_ms / 1000 * 1.5 + STUCK_MARGIN_S
        self.listener = HandOverOnRevoke(self.ledger, commit=self.commit_offsets, seek=self.read_again_from)

    @property
    def producer(self) -> Producer:
        return self._producer

    def send(self, records: list[Record], mark: int) -> None:
        """Score and send one batch; its offsets wait in the ledger for the acknowledgements."""
        first, after = span((r.topic, r.partition, r.offset) for r in records)
        try:
            with self.metrics.batch_duration.time():
                account = self.process(records)
        except NotAuthorized as exc:
            self._refused(exc, first)
            return
        self._hand_to_ledger(first, after, account)

    def settle(self, *, polled_nothing: bool) -> int:
        """Account and commit the leading acknowledged batches; at the bound, wait for the oldest first."""
        oldest = self.ledger.oldest()
        if oldest is not None and len(self.ledger) >= self.settings.stream_max_in_flight:
            oldest.delivery.wait(BACKPRESSURE_WAIT_S)
        delivered = self._deliver_leading()
        self.metrics.in_flight.set(len(self.ledger))
        return delivered

    def on_broker_answered(self) -> None:
        if due := self.ledger.commit_due():  # a commit lost while the broker was away is made again
            self.commit_offsets(due)

    def finish(self) -> None:
        """On stop: wait for the batches in flight, count and commit what was delivered (synchronously)."""
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while (oldest := self.ledger.oldest()) is not None and time.monotonic() < deadline:
            oldest.delivery.wait(deadline - time.monotonic())
            if not self._deliver_leading() and (oldest := self.ledger.oldest()) and not oldest.delivery.done():
                break
        if dropped := self.ledger.drop_unacknowledged():
            log.warning("stopping with %d batch(es) unacknowledged: they will be read again", dropped)
        assigned = self.consumer.assignment()
        owned: dict[Partition, int] = {p: o for p, o in self.ledger.positions.items() if p in assigned}
        if owned:
            try:
                self.consumer.commit(to_commit(owned))
            except TransportError as exc:
                self.metrics.commit_failures.inc()
                log.warning("final commit failed (%s): the last batches will be read again", exc)

    def close(self) -> None:
        if not self._producer.close(timeout=10):
            log.warning("results still unsent after 10 s were dropped on close: they will be read again")

    def _deliver_leading(self) -> int:
        """Every leading batch whose results were all acknowledged is counted and committed, in order."""
        settled = self.ledger.settle(stuck_after=self._stuck_after)
        for batch in settled.delivered:
            batch.on_delivered()
        if settled.commit:  # the batches before a failed one are delivered: committed before backing off
            self.commit_offsets(settled.commit)
            self._delivered()
        if settled.failure is not None:
            self._recover(settled)  # after the commit, so /readyz keeps saying why
        return len(settled.delivered)

    def _recover(self, settled: Settled) -> None:
        """After a failed send: a new producer if needed, and re-read from the failed batch's first offsets."""
        error = settled.failure
        assert error is not None  # only a settle that failed is recovered from
        if not getattr(error, "retriable", False):
            self._replace_producer()
        self.read_again_from(settled.rewind)
        where = ", ".join(f"{p[0]}[{p[1]}]@{o}" for p, o in sorted(settled.rewind.items()))
        self._back_off(
            self._failure_reason(error, "results not acknowledged"),
            f"{settled.dropped} batch(es) dropped uncommitted, re-reading {where}",
        )

    def _refused(self, error: NotAuthorized, first: dict[Partition, int]) -> None:
        """The broker refused a send before it left (an ACL): the batch is read again, later.

        What the sinks had sent of it is forgotten (the batch is not committed, so it is scored
        again: duplicates, never loss); the consumer is not ready until the ACL lets it write.
        """
        self.outputs.discard()
        self._replace_producer()  # its metadata remembers the refusal
        self._same_partitions.clear()
        self.read_again_from(first)
        self._back_off(write_refusal(self.settings, error), "re-reading the batch")

    def _replace_producer(self) -> None:
        """A new producer after a non-retriable send error.

        An idempotent producer stops for good after some errors (a record too large, a fenced
        epoch); a new one starts clean, and the dropped batches' leftovers go with the old one.
        After timeouts (broker unreachable) the producer resets itself and is kept.
        """
        self._producer.close(timeout=0)
        try:
            self._producer = rebuild_until_stopped(
                self._new_producer,
                stopping=self._stopping,
                max_delay=self.settings.stream_retry_max_seconds,
                what="create a producer",
            )
        except TransportError as exc:
            raise SinkError(f"cannot reconnect a producer to {self.settings.kafka_bootstrap_servers}") from exc

    def commit_offsets(self, offsets: dict[Partition, int]) -> None:
        """Commit without waiting: a lost commit is redone (``OffsetLedger.commit_due``) or covered by the next."""
        self.consumer.commit_async(to_commit(offsets), self._committed)

    def _committed(self, error: BaseException | None) -> None:
        if error is not None:
            self.metrics.commit_failures.inc()
            self.ledger.commit_failed()
            log.warning("offset commit failed (%s); it is made again", error)
