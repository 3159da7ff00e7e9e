"""The stream scorer: Kafka micro-batches through the shared ``Scorer``, at least once, pipelined.

Each poll returns whatever is buffered (at most ``stream_batch_events``), and it is scored at
once: a quiet stream is scored event by event, a busy one in full batches, because events pile up
while the previous batch is scored. For each micro-batch: decode every event, score the decodable
ones as one frame, add one prediction per scored event to the predictions sink and every other
event, unchanged, to the dead-letter sink with the reason in its headers. The consumer does not
wait for the broker's acknowledgements before polling again: up to ``stream_max_in_flight``
batches are in flight in the offset ledger (``streaming.ledger``), which commits them in order,
only for the leading batches whose every result was acknowledged. A failed send stops commits at
that batch and re-reads from its first offset; a crash re-reads from the last commit. Either way:
duplicates, never loss.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import (
    AuthorizationError,
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
)
from kafka.structs import OffsetAndMetadata

from monitoring.health import Health
from monitoring.metrics import ScoringMetrics
from scoring import Scorer, Settings, SinkError
from scoring.agreement import Agreement
from scoring.watcher import FixedModel, ModelWatcher, model_origin
from streaming.clients import close_producer, rebuild_until_stopped, stream_consumer, stream_producer
from streaming.errors import KafkaAccessError
from streaming.ledger import OffsetLedger, Partition, Settled, earliest_firsts, merge_earliest, span
from streaming.live_window import SHADOW_DIR, LiveWindow
from streaming.readiness import StreamReadiness
from streaming.rebalance import AbortOnRevoke, HandOverOnRevoke
from streaming.shadow import ShadowScorer
from streaming.sinks import DeadLetterSink, PredictionSink, WindowSink
from streaming.stats import StreamStats
from streaming.transactions import Transactions, is_fatal
from streaming.transform import BatchTransform

log = logging.getLogger("scorepipe.stream")
ACK_TIMEOUT_S = 60.0  # on stop: the longest wait for the batches in flight
BACKPRESSURE_WAIT_S = 1.0  # at the in-flight bound: one wait for the oldest batch before polling again
IDLE_POLL_MS = 500  # poll timeout with nothing in flight: joins and rebalances progress inside poll()
IN_FLIGHT_POLL_MS = 5  # poll timeout while acknowledgements are awaited
FRESH_POLL_MS = 2  # the extra poll for events that arrived while the last batch was scored
UNREACHABLE_LOG_S = 10.0  # while no broker answers: how often that is logged
TRANSACTION_LINGER_S = 0.2  # exactly-once: the oldest a transaction gets before it is committed
STUCK_MARGIN_S = 5.0  # past 1.5 x the delivery timeout and this, a batch with no outcome counts as failed


class StreamConsumer:
    """Scores the features topic into the predictions and dead-letter topics.

    ``models`` follows an alias (hot reload) or is one fixed ``Scorer``; ``shadow``, if given, is
    a challenger scored on the same frames, whose predictions go to the shadow topic and never
    touch the champion's path.
    """

    def __init__(
        self,
        settings: Settings,
        models: Scorer | ModelWatcher | FixedModel,
        *,
        shadow: ModelWatcher | None = None,
        live_window: LiveWindow | None = None,
        shadow_window: LiveWindow | None = None,
        metrics: ScoringMetrics | None = None,
        health: Health | None = None,
        client_id: str = "scorepipe-stream",
        stopping: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.models = FixedModel(models) if isinstance(models, Scorer) else models
        self.shadow = shadow
        self.metrics = metrics or ScoringMetrics()
        self.health = health or Health()
        self.stats = StreamStats()
        self.ledger = OffsetLedger()
        self._stopping = stopping or threading.Event()  # the entry point's, set by its signal handlers
        serving = self.models.current()
        if serving is None:
            raise SinkError(f"no model to score with for {self.models.ref!r}")
        self.transform = BatchTransform(serving.bundle.schema)
        self._same_partitions: dict[str, bool] = {}
        self._retry_delay = 0.0
        self._poll_backoff = 0.0
        self._unreachable_logged = float("-inf")
        # The producer fails a result by its delivery timeout; one that says nothing well past it is stuck.
        self._stuck_after = settings.stream_delivery_timeout_ms / 1000 * 1.5 + STUCK_MARGIN_S
        self.metrics.set_model(
            self.models.ref,
            serving.version,
            small_frame_shortcut=serving.small_frame_shortcut,
            origin=model_origin(serving.bundle.info),
        )
        if shadow is not None:
            self.metrics.set_model(shadow.ref, shadow.version)
        self.readiness = StreamReadiness(self.health, settings.kafka_bootstrap_servers, lambda: self.models.version)
        self.health.add_note("model", lambda: _refused_note(self.models))
        if shadow is not None:
            self.health.add_note("shadow", lambda: _refused_note(shadow))
        self._client_id = client_id
        self.consumer = stream_consumer(settings, client_id)
        exactly_once = settings.stream_guarantee == "exactly-once"
        self.transactions = Transactions(settings, client_id, self._stopping) if exactly_once else None
        self.producer = self.transactions.producer if self.transactions else stream_producer(settings, client_id)
        self._transaction_started = 0.0
        self._polled_nothing = False
        # exactly once: kafka-python revokes partitions on its IO thread, while this loop runs; the
        # lock keeps a transaction's sends and commit apart from the abort a revocation makes.
        self._transaction_lock = threading.Lock()
        self._revocations = 0
        self._aborted_from: dict[Partition, int] = {}  # where an aborted transaction's batches began
        self.predictions = PredictionSink(lambda: self.producer, settings.predictions_topic, self._same_partition_count)
        self.dead_letters = DeadLetterSink(lambda: self.producer, settings.dlq_topic)
        self.window = WindowSink(live_window)
        self._shadow = (
            ShadowScorer(
                shadow,
                PredictionSink(lambda: self.producer, settings.shadow_topic, self._same_partition_count),
                WindowSink(shadow_window),
                self.metrics,
            )
            if shadow is not None
            else None
        )
        listener: ConsumerRebalanceListener = (
            AbortOnRevoke(self._abort_on_revoke, self._seek_returned)
            if self.transactions
            else HandOverOnRevoke(self.ledger, commit=self.commit_offsets, seek=self.read_again_from)
        )
        self.consumer.subscribe([settings.features_topic], listener=listener)

    @property
    def agreements(self) -> dict[tuple[int, int], Agreement]:
        """Champion/challenger agreement per version pair, over this process's life."""
        return self._shadow.agreements if self._shadow is not None else {}

    def _replace_producer(self) -> None:
        """A new producer after a non-retriable send error.

        An idempotent producer stops for good after some errors (a record too large, a fenced
        epoch); a new one starts clean, and the dropped batches' leftovers go with the old one.
        After timeouts (broker unreachable) the producer resets itself and is kept.
        """
        close_producer(self.producer, timeout=0)
        try:
            self.producer = rebuild_until_stopped(
                lambda: stream_producer(self.settings, self._client_id),
                stopping=self._stopping,
                max_delay=self.settings.stream_retry_max_seconds,
                what="create a producer",
            )
        except KafkaError as exc:
            raise SinkError(f"cannot reconnect a producer to {self.settings.kafka_bootstrap_servers}") from exc

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
        if isinstance(error, AuthorizationError) and not isinstance(error, TransactionalIdAuthorizationFailedError):
            return write_refusal(self.settings, error)
        return f"{what}: {type(error).__name__}: {error}"

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        """Ask the loop to finish the batch in hand, wait for acknowledgements, commit and return (signal-safe)."""
        self._stopping.set()

    def run(self, *, idle_exit_seconds: float | None = None, on_batch: Callable[[StreamStats], None] | None = None):
        """Consume until stopped (``stop()``, or the entry point's stop event) or idle for ``idle_exit_seconds``.

        Signal handlers, the collector and thread limits are the entry point's: see ``streaming.process``.
        """
        idle_since = time.monotonic()
        try:
            while not self._stopping.is_set():
                self.health.beat()
                self._hold_back_at_the_bound()
                revocations = self._revocations
                records = self._poll()
                self._polled_nothing = not records
                self.readiness.assigned = len(self.consumer.assignment())
                self._check_broker()  # every few seconds: reachability, lag, a lost commit
                if records:
                    self._send_batch(records, revocations)
                delivered = self._settle()
                if (records or delivered) and on_batch is not None:
                    on_batch(self.stats)
                if records or not self.readiness.assigned:
                    idle_since = time.monotonic()  # waiting for partitions is not being idle
                elif self._idle_for(idle_since, idle_exit_seconds):
                    if self._caught_up():
                        break
                    idle_since = time.monotonic()  # empty polls while events wait (a broker recovering)
            self._finish()
        finally:
            self.close()
        return self.stats

    def _idle_for(self, since: float, seconds: float | None) -> bool:
        """Nothing polled since ``since`` for ``seconds``, and no result still awaiting its acknowledgement."""
        return seconds is not None and not len(self.ledger) and time.monotonic() - since >= seconds

    def _caught_up(self) -> bool:
        """Nothing left to read on the assigned partitions, as the broker says: idle, not merely unanswered."""
        assigned = list(self.consumer.assignment())
        try:
            ends = self.consumer.end_offsets(assigned, timeout_ms=2000)
            return all(self.consumer.position(tp, timeout_ms=2000) >= end for tp, end in ends.items())
        except KafkaError as exc:
            log.info("not stopping for idleness: cannot tell whether events wait (%s)", exc)
            return False

    def close(self) -> None:
        self.window.close()
        if self._shadow is not None:
            self._shadow.close()
        if self.transactions is not None:
            self.transactions.close(timeout=10)
        elif not close_producer(self.producer, timeout=10):
            log.warning("results still unsent after 10 s were dropped on close: they will be read again")
        self.consumer.close()  # leaves the group, so its partitions move at once
        self.models.stop()

    # -- the loop ------------------------------------------------------------------------------

    def _check_broker(self) -> None:
        if not self.readiness.due():
            return
        answered = self.readiness.check_broker(self.consumer, self.ledger.positions, self.metrics)
        if answered and (due := self.ledger.commit_due()):  # the broker answers again: redo a lost commit
            self.commit_offsets(due)

    def _poll(self) -> list[Any]:
        """Whatever is buffered, at once (a partial batch never waits to fill)."""
        oldest = self.ledger.oldest()
        if oldest is None:
            timeout_ms = IDLE_POLL_MS  # wait for events: poll returns as soon as any arrive
        elif oldest.delivery.done():
            timeout_ms = 0  # acknowledged: go and commit it
        else:
            timeout_ms = IN_FLIGHT_POLL_MS  # acknowledgements awaited: look at them again soon
        limit = self.settings.stream_batch_events
        records = self._poll_once(timeout_ms, limit)
        if records and len(records) < limit:
            # What a poll returns was fetched while the previous batch was being scored: the client
            # asks for more only once its buffer is empty, i.e. now. One short extra poll takes the
            # events that arrived meanwhile, instead of leaving them a whole cycle for the next batch.
            records += self._poll_once(FRESH_POLL_MS, limit - len(records))
        return records

    def _poll_once(self, timeout_ms: int, limit: int) -> list[Any]:
        """One poll; a broker that cannot be reached is waited out (with back-off), never a crash.

        kafka-python's ``poll`` raises connection errors from its group coordinator while every
        broker is down; nothing was fetched then, so nothing is skipped by returning no records.
        """
        try:
            polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=limit)
        except AuthorizationError as exc:
            raise KafkaAccessError(read_refusal(self.settings, exc)) from None
        except KafkaError as exc:
            if not exc.retriable:
                raise
            self.readiness.broker_unreachable(exc)
            now = time.monotonic()
            if now - self._unreachable_logged >= UNREACHABLE_LOG_S:
                log.warning("broker %s unreachable (%s); retrying", self.settings.kafka_bootstrap_servers, exc)
                self._unreachable_logged = now
            self._poll_backoff = min(max(0.05, self._poll_backoff * 2), 1.0)
            self._stopping.wait(self._poll_backoff)
            return []
        self._poll_backoff = 0.0
        if not polled and not self.consumer.assignment():
            self._raise_if_input_refused()
        return _flatten(polled)

    def _raise_if_input_refused(self) -> None:
        """kafka-python only logs a subscribed topic the ACLs hide, and then waits with no partitions."""
        cluster = getattr(getattr(self.consumer, "_client", None), "cluster", None)
        if cluster is not None and self.settings.features_topic in getattr(cluster, "unauthorized_topics", ()):
            refusal = TopicAuthorizationFailedError(self.settings.features_topic)
            raise KafkaAccessError(read_refusal(self.settings, refusal))

    def _hold_back_at_the_bound(self) -> None:
        """Backpressure: pause fetching while ``stream_max_in_flight`` batches await acknowledgement."""
        full = len(self.ledger) >= self.settings.stream_max_in_flight
        paused = self.consumer.paused()
        if full and not paused:
            self.consumer.pause(*self.consumer.assignment())
        elif not full and paused:
            self.consumer.resume(*paused)

    def _settle(self) -> int:
        """Account and commit the leading acknowledged batches; at the bound, wait for the oldest first."""
        if self.transactions is not None:
            return self._commit_transaction() if self._transaction_due() else 0
        oldest = self.ledger.oldest()
        if oldest is not None and len(self.ledger) >= self.settings.stream_max_in_flight:
            oldest.delivery.wait(BACKPRESSURE_WAIT_S)
        delivered = self._deliver_leading()
        self.metrics.in_flight.set(len(self.ledger))
        return delivered

    def _deliver_leading(self) -> int:
        """Every leading batch whose results were all acknowledged is counted and committed, in order."""
        settled = self.ledger.settle(stuck_after=self._stuck_after)
        for batch in settled.delivered:
            batch.on_delivered()
        if settled.failure is not None:
            self._recover(settled)
        if settled.commit:
            self.commit_offsets(settled.commit)
            self.stats.commits += 1
            self.readiness.send_error = None
            self._retry_delay = 0.0
        return len(settled.delivered)

    def _recover(self, settled: Settled) -> None:
        """After a failed send: a new producer if needed, and re-read from the failed batch's first offsets."""
        error = settled.failure
        if not getattr(error, "retriable", False):
            self._replace_producer()
        self.read_again_from(settled.rewind)
        where = ", ".join(f"{p[0]}[{p[1]}]@{o}" for p, o in sorted(settled.rewind.items()))
        self._back_off(
            self._failure_reason(error, "results not acknowledged"),
            f"{settled.dropped} batch(es) dropped uncommitted, re-reading {where}",
        )

    # -- exactly once: results and input offsets in one transaction ---------------------------

    def _transaction_due(self) -> bool:
        """Commit at the in-flight bound, when the stream pauses, or once the transaction is this old."""
        if not len(self.ledger):
            return False
        age = time.monotonic() - self._transaction_started
        return (
            self._polled_nothing
            or len(self.ledger) >= self.settings.stream_max_in_flight
            or age >= TRANSACTION_LINGER_S
        )

    def _commit_transaction(self) -> int:
        """Commit the open transaction: its batches' results and the offsets after them, or none of it."""
        assert self.transactions is not None
        error: KafkaError | None = None
        with self._transaction_lock:
            batches, after = self.ledger.take_all()
            if not batches:
                return 0
            try:
                self.transactions.commit(_to_commit(after), self.consumer.group_metadata())
            except KafkaError as exc:
                error = exc
            else:
                self.ledger.committed(after)
        if error is not None:
            self._abort_and_rewind(error, earliest_firsts(batches))
            return 0
        for batch in batches:
            batch.on_delivered()
        self.stats.commits += 1
        self.readiness.send_error = None
        self._retry_delay = 0.0
        return len(batches)

    def _abort_and_rewind(self, error: BaseException, rewind: dict[Partition, int]) -> None:
        """Abort (or, after a fatal error, replace the producer) and read the aborted batches again."""
        assert self.transactions is not None
        with self._transaction_lock:
            merge_earliest(rewind, self.ledger.drop_all())
            if is_fatal(error):
                log.error(
                    "transactional producer %s cannot go on (%s: %s); starting a new one (is another member "
                    "using the same --client-id?)",
                    self.transactions.transactional_id,
                    type(error).__name__,
                    error,
                )
                self.transactions.replace()
            else:
                self.transactions.abort()
            self.producer = self.transactions.producer
        self._same_partitions.clear()
        # A commit that timed out may still have been carried out by the broker (offsets and results
        # together): where to read again from is what the group has committed, not what was sent.
        self.read_again_from({**rewind, **self._committed_positions(set(rewind))})
        self._back_off(self._failure_reason(error, "transaction aborted"), "re-reading from the last committed offsets")

    def _committed_positions(self, partitions: set[Partition]) -> dict[Partition, int]:
        """The group's committed offsets for ``partitions`` (those it has), read from the broker."""
        positions: dict[Partition, int] = {}
        for p in partitions:
            try:
                offset = self.consumer.committed(TopicPartition(*p))
            except KafkaError as exc:
                log.warning("cannot read the committed offset of %s[%d] (%s): reading again from sent offsets", *p, exc)
                continue
            if offset is not None:
                positions[p] = int(offset)
        return positions

    def _abort_on_revoke(self) -> None:
        """Partitions move: the open transaction is aborted; the next owner reads from the committed offsets."""
        assert self.transactions is not None
        with self._transaction_lock:  # waits for a commit under way (bounded by its timeout)
            self._revocations += 1
            dropped = self.ledger.drop_all()
            merge_earliest(self._aborted_from, dropped)
            if self.transactions.open:
                self.transactions.abort()
                self.producer = self.transactions.producer
        if dropped:
            log.info("rebalance: aborted the open transaction (%d partition(s) to be read again)", len(dropped))

    def _seek_returned(self, assigned: set[Any]) -> None:
        """Partitions back after a revocation are read again from where the aborted transaction began."""
        with self._transaction_lock:
            returned, self._aborted_from = self._aborted_from, {}
        for tp in assigned:
            offset = returned.get((tp.topic, tp.partition))
            if offset is not None:
                self.consumer.seek(tp, offset)

    def _finish(self) -> None:
        """On stop: wait for the batches in flight, count and commit what was delivered (synchronously)."""
        if self.transactions is not None:
            self._commit_transaction()
            return
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while (oldest := self.ledger.oldest()) is not None and time.monotonic() < deadline:
            oldest.delivery.wait(deadline - time.monotonic())
            if not self._deliver_leading() and (oldest := self.ledger.oldest()) and not oldest.delivery.done():
                break
        if dropped := self.ledger.drop_unacknowledged():
            log.warning("stopping with %d batch(es) unacknowledged: they will be read again", dropped)
        assigned = self.consumer.assignment()
        owned = {p: o for p, o in self.ledger.positions.items() if p in assigned}
        if owned:
            try:
                self.consumer.commit(_to_commit(owned))
            except KafkaError as exc:
                self.metrics.commit_failures.inc()
                log.warning("final commit failed (%s): the last batches will be read again", exc)

    def _send_batch(self, records: list[Any], revocations: int = 0) -> None:
        """Decode, score and send one micro-batch; its offsets wait in the ledger for the acknowledgements."""
        if self.transactions is not None:
            self._send_in_transaction(records, revocations)
            return
        first, after = span((r.topic, r.partition, r.offset) for r in records)
        try:
            with self.metrics.batch_duration.time():
                account = self._process(records)
        except AuthorizationError as exc:
            self._refused(exc, first)
            return
        self._hand_to_ledger(first, after, account)

    def _send_in_transaction(self, records: list[Any], revocations: int) -> None:
        """The batch joins the open transaction, unless partitions were revoked since it was polled."""
        assert self.transactions is not None
        first, after = span((r.topic, r.partition, r.offset) for r in records)
        outputs = [self.settings.predictions_topic] + ([self.settings.shadow_topic] if self._shadow else [])
        for topic in outputs:
            self._same_partition_count(topic)  # may ask the broker: not while holding the lock
        error: KafkaError | None = None
        with self._transaction_lock:
            stale = self._revocations != revocations  # polled before a revocation: maybe not ours now
            if not stale:
                try:
                    if not self.transactions.open:
                        self._transaction_started = time.monotonic()
                    self.transactions.begin()
                    with self.metrics.batch_duration.time():
                        account = self._process(records)
                    self._hand_to_ledger(first, after, account)
                except KafkaError as exc:  # refused by an ACL, or the transaction could not begin
                    error = exc
        if stale:
            self._read_from_committed(set(first))
        elif error is not None:
            self._abort_and_rewind(error, dict(first))

    def _read_from_committed(self, partitions: set[Partition]) -> None:
        """Read partitions still assigned again from their committed offsets (or the start, if none)."""
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        keep = partitions & assigned
        committed = self._committed_positions(keep)
        self.read_again_from(committed)
        for p in keep - committed.keys():
            self.consumer.seek_to_beginning(TopicPartition(*p))
        log.info("a batch polled before a rebalance was dropped; %d partition(s) read again", len(keep))

    def _hand_to_ledger(self, first: dict[Partition, int], after: dict[Partition, int], account: Any) -> None:
        delivery = self.predictions.flush() + self.dead_letters.flush()
        shadow = self._shadow.flush() if self._shadow is not None else None
        self.window.flush()

        def delivered() -> None:
            account()
            if shadow is not None and self._shadow is not None:
                self._shadow.count_failures(shadow)

        self.ledger.add(first, after, delivery, delivered)
        self.metrics.in_flight.set(len(self.ledger))

    def _refused(self, error: AuthorizationError, first: dict[Partition, int]) -> None:
        """The broker refused a send before it left (an ACL): the batch is read again, later.

        What the sinks had sent of it is forgotten (the batch is not committed, so it is scored
        again: duplicates, never loss); the consumer is not ready until the ACL lets it write.
        """
        self.predictions.flush()
        self.dead_letters.flush()
        if self._shadow is not None:
            self._shadow.flush()
        self._replace_producer()  # its metadata remembers the refusal
        self._same_partitions.clear()
        self.read_again_from(first)
        self._back_off(write_refusal(self.settings, error), "re-reading the batch")

    def _process(self, records: list[Any]) -> Callable[[], None]:
        """Score one batch into the sinks; returns what counts it once it is delivered."""
        scorer = self.models.current()  # one version for the whole batch, swapped only between batches
        assert scorer is not None
        batch = self.transform(scorer, records)
        if batch.accepted is not None and len(batch.kept):
            self.predictions.add(scorer, batch.kept, batch.accepted)
            self.window.add(batch.accepted, batch.kept)
            if self._shadow is not None and batch.frame is not None:
                self._shadow.score(scorer, batch.frame[batch.valid], batch.accepted, batch.kept)
        for record, reason, stage in batch.dead:
            self.dead_letters.add(record, reason, stage)
            log.warning("dead letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        return lambda: self.stats.account(batch, self.metrics)

    def _same_partition_count(self, topic: str) -> bool:
        """Whether ``topic`` has as many partitions as the input (then results keep their event's partition)."""
        if topic not in self._same_partitions:
            output = self.producer.partitions_for(topic) or set()
            source = self.consumer.partitions_for_topic(self.settings.features_topic) or set()
            self._same_partitions[topic] = bool(output) and output == source
        return self._same_partitions[topic]

    # -- the client's side of commits and seeks ------------------------------------------------

    def commit_offsets(self, offsets: dict[Partition, int]) -> None:
        """Commit without waiting: a lost commit is redone (``OffsetLedger.commit_due``) or covered by the next."""
        self.consumer.commit_async(_to_commit(offsets), callback=self._committed)

    def _committed(self, offsets: Any, result: Any) -> None:
        if isinstance(result, BaseException):
            self.metrics.commit_failures.inc()
            self.ledger.commit_failed()
            log.warning("offset commit failed (%s); it is made again", result)

    def read_again_from(self, offsets: dict[Partition, int]) -> None:
        """Read partitions still assigned to this member again from ``offsets`` (local only)."""
        assigned = self.consumer.assignment()
        for p, offset in offsets.items():
            if p in assigned:
                self.consumer.seek(TopicPartition(*p), offset)


def _who(settings: Settings) -> str:
    if settings.kafka_sasl_username and settings.kafka_security_protocol.startswith("SASL_"):
        return f"user {settings.kafka_sasl_username}"
    if settings.kafka_ssl_certfile is not None:
        return f"the client certificate {settings.kafka_ssl_certfile}"
    return "this client"


def write_refusal(settings: Settings, error: BaseException) -> str:
    """Which WRITE the ACLs refuse, for ``/readyz`` and the log (kafka-python names the topic in the error)."""
    text = str(error)
    outputs = (settings.predictions_topic, settings.dlq_topic, settings.shadow_topic)
    topics = [t for t in outputs if t in text] or [t for t in outputs[:2]]
    return (
        f"not authorized to WRITE to topic {' or '.join(topics)} ({_who(settings)}; Kafka ACLs): "
        "nothing past the last delivered batch is committed; retrying until the ACL allows it"
    )


def read_refusal(settings: Settings, error: BaseException) -> str:
    """Which READ the ACLs refuse: the input topic, or the consumer group."""
    if "Group" in type(error).__name__:
        what = f"READ for consumer group {settings.consumer_group}"
    else:
        what = f"READ on topic {settings.features_topic}"
    return f"Kafka ACLs do not allow {what} ({_who(settings)}): {type(error).__name__}; grant it and start again"


def _flatten(polled: dict[Any, list[Any]]) -> list[Any]:
    return [record for records in polled.values() for record in records]


def _to_commit(offsets: dict[Partition, int]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {TopicPartition(*p): OffsetAndMetadata(offset, "", -1) for p, offset in offsets.items()}


def score_stream(
    settings: Settings, models: Scorer | ModelWatcher, *, shadow: ModelWatcher | None = None, **kwargs: Any
) -> StreamConsumer:
    """Build a consumer writing its live window under ``settings.live_dir`` (a shadow's under ``_shadow/``)."""

    def window(root: Any) -> LiveWindow:
        return LiveWindow(root, roll_rows=settings.live_window_rows, roll_seconds=settings.live_window_seconds)

    shadow_window = window(settings.live_dir / SHADOW_DIR) if shadow is not None else None
    return StreamConsumer(
        settings, models, shadow=shadow, live_window=window(settings.live_dir), shadow_window=shadow_window, **kwargs
    )


def _refused_note(models: ModelWatcher | FixedModel) -> str | None:
    """What ``/readyz`` says after a refused reload: the old version serves on, and why the new one did not."""
    if not models.last_error:
        return None
    return f"serving v{models.version}; {models.failures} reload(s) refused, the last: {models.last_error}"
