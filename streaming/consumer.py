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

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from kafka import ConsumerRebalanceListener, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from threadpoolctl import threadpool_limits

from monitoring.health import Health
from monitoring.metrics import ScoringMetrics
from scoring import SchemaError, Scorer, Settings, SinkError
from scoring.agreement import Agreement
from scoring.scorer import CONFIDENCE, PREDICTION, REJECT_REASON
from scoring.watcher import FixedModel, ModelWatcher
from streaming.clients import kafka_consumer, kafka_producer
from streaming.events import EventDecoder
from streaming.ledger import OffsetLedger, Partition, Settled, span
from streaming.live_window import SHADOW_DIR, LiveWindow
from streaming.shadow import ShadowScorer
from streaming.sinks import DeadLetterSink, PredictionSink, WindowSink

log = logging.getLogger("scorepipe.stream")
ACK_TIMEOUT_S = 60.0  # on stop: the longest wait for the batches in flight
BACKPRESSURE_WAIT_S = 1.0  # at the in-flight bound: one wait for the oldest batch before polling again
IDLE_POLL_MS = 500  # poll timeout with nothing in flight: joins and rebalances progress inside poll()
IN_FLIGHT_POLL_MS = 5  # poll timeout while acknowledgements are awaited
FRESH_POLL_MS = 2  # the extra poll for events that arrived while the last batch was scored
HANDOVER_WAIT_S = 2.0  # on revocation: the longest wait for acknowledgements (the IO thread is blocked)
BROKER_CHECK_S = 5.0  # how often end offsets are asked for (consumer lag, broker reachability)


@dataclass
class StreamStats:
    """Running totals of one consumer process."""

    events: int = 0
    predictions: int = 0
    dead_letters: int = 0
    batches: int = 0
    commits: int = 0
    send_failures: int = 0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "predictions": self.predictions,
            "dead_letters": self.dead_letters,
            "batches": self.batches,
            "commits": self.commits,
            "send_failures": self.send_failures,
            "seconds": round(time.monotonic() - self.started, 3),
        }


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
    ) -> None:
        self.settings = settings
        self.models = FixedModel(models) if isinstance(models, Scorer) else models
        self.shadow = shadow
        self.metrics = metrics or ScoringMetrics()
        self.health = health or Health()
        self.stats = StreamStats()
        self.ledger = OffsetLedger()
        self._stopping = threading.Event()
        serving = self.models.current()
        if serving is None:
            raise SinkError(f"no model to score with for {self.models.ref!r}")
        self._schema = serving.bundle.schema
        self._decoder = EventDecoder(self._schema)
        self._same_partitions: dict[str, bool] = {}
        self._assigned = 0
        self._broker_checked: float | None = None
        self._broker_error: str | None = "not checked yet"
        self._send_error: str | None = None
        self._retry_delay = 0.0
        self.metrics.set_model(self.models.ref, serving.version, small_frame_shortcut=serving.small_frame_shortcut)
        if shadow is not None:
            self.metrics.set_model(shadow.ref, shadow.version)
        self._add_readiness_checks()
        self._client_id = client_id
        self.consumer = kafka_consumer(
            settings,
            group_id=settings.consumer_group,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.stream_batch_events,
            fetch_max_wait_ms=min(settings.stream_batch_ms, 500),
            session_timeout_ms=settings.stream_session_timeout_ms,
            heartbeat_interval_ms=max(1000, settings.stream_session_timeout_ms // 4),
            max_poll_interval_ms=300_000,
        )
        self.producer = self._new_producer()
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
        listener = HandOverOnRevoke(self.ledger, commit=self._commit_async, seek=self._seek)
        self.consumer.subscribe([settings.features_topic], listener=listener)
        # Micro-batches are small: one OpenMP thread scores them faster than two (no per-tree
        # fork/join) and leaves the other core to the Kafka client's network threads.
        self._threads = threadpool_limits(limits=1, user_api="openmp")

    @property
    def agreements(self) -> dict[tuple[int, int], Agreement]:
        """Champion/challenger agreement per version pair, over this process's life."""
        return self._shadow.agreements if self._shadow is not None else {}

    def _new_producer(self) -> KafkaProducer:
        return kafka_producer(
            self.settings,
            client_id=f"{self._client_id}-producer",
            acks="all",
            linger_ms=2,
            batch_size=256 * 1024,
            delivery_timeout_ms=self.settings.stream_delivery_timeout_ms,
            request_timeout_ms=min(30_000, self.settings.stream_delivery_timeout_ms - 2),
        )

    def _replace_producer(self) -> None:
        """A new producer after a non-retriable send error.

        An idempotent producer stops for good after some errors (a record too large, a fenced
        epoch); a new one starts clean, and the dropped batches' leftovers go with the old one.
        After timeouts (broker unreachable) the producer resets itself and is kept.
        """
        self.producer.close(timeout=0)
        delay = 0.5
        while True:
            try:
                self.producer = self._new_producer()
                return
            except KafkaError as exc:
                if self._stopping.is_set():
                    raise SinkError(f"cannot reconnect a producer to {self.settings.kafka_bootstrap_servers}") from exc
                log.error("cannot create a producer (%s); retrying in %.1f s", exc, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, self.settings.stream_retry_max_seconds)

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        """Ask the loop to finish the batch in hand, wait for acknowledgements, commit and return (signal-safe)."""
        self._stopping.set()

    def run(self, *, idle_exit_seconds: float | None = None, on_batch: Callable[[StreamStats], None] | None = None):
        """Consume until stopped (SIGTERM, SIGINT, ``stop()``) or idle for ``idle_exit_seconds``."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        # The model, the client and the imports are long-lived: kept out of the collector's full
        # passes, which otherwise stall the loop for ~100 ms a few times a minute.
        gc.collect()
        gc.freeze()
        idle_since = time.monotonic()
        try:
            while not self._stopping.is_set():
                self.health.beat()
                self._hold_back_at_the_bound()
                records = self._poll()
                self._assigned = len(self.consumer.assignment())
                self._check_broker()
                if records:
                    self._send_batch(records)
                delivered = self._settle()
                if (records or delivered) and on_batch is not None:
                    on_batch(self.stats)
                if records or not self._assigned:
                    idle_since = time.monotonic()  # waiting for partitions is not being idle
                elif self._idle_for(idle_since, idle_exit_seconds):
                    break
            self._finish()
        finally:
            self.close()
        return self.stats

    def _idle_for(self, since: float, seconds: float | None) -> bool:
        """Nothing polled since ``since`` for ``seconds``, and no result still awaiting its acknowledgement."""
        return seconds is not None and not len(self.ledger) and time.monotonic() - since >= seconds

    def close(self) -> None:
        self.window.close()
        if self._shadow is not None:
            self._shadow.close()
        self.producer.close(timeout=10)
        self.consumer.close()  # leaves the group, so its partitions move at once
        self._threads.restore_original_limits()
        self.models.stop()

    # -- health ------------------------------------------------------------------------------

    def _add_readiness_checks(self) -> None:
        self.health.add_check("model", lambda: None if self.models.version is not None else "no model loaded")
        self.health.add_check(
            "partitions", lambda: None if self._assigned else "no partitions assigned (joining the group?)"
        )
        self.health.add_check("broker", self._broker_reason)
        self.health.add_check("results", lambda: self._send_error)

    def _broker_reason(self) -> str | None:
        if self._broker_error is not None:
            return f"broker {self.settings.kafka_bootstrap_servers}: {self._broker_error}"
        if self._broker_checked is None or time.monotonic() - self._broker_checked > 3 * BROKER_CHECK_S + 10:
            return "broker not answered recently"
        return None

    def _check_broker(self) -> None:
        """Every few seconds ask the broker for end offsets: it proves the broker answers and gives the lag."""
        now = time.monotonic()
        if self._broker_checked is not None and now - self._broker_checked < BROKER_CHECK_S:
            return
        assigned = list(self.consumer.assignment())
        if not assigned:
            return
        try:
            ends = self.consumer.end_offsets(assigned, timeout_ms=2000)
        except KafkaError as exc:
            self._broker_error = f"{type(exc).__name__}: {exc}"
            self._broker_checked = now
            return
        self._broker_error = None
        self._broker_checked = now
        self.metrics.lag.clear()  # partitions that moved to another member stop being reported
        for tp, end in ends.items():
            done = self.ledger.positions.get(tp)
            if done is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, end - done))
        if due := self.ledger.commit_due():  # the broker answers again: redo a commit that was lost
            self._commit_async(due)

    # -- the loop ------------------------------------------------------------------------------

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
        records = _flatten(self.consumer.poll(timeout_ms=timeout_ms, max_records=limit))
        if records and len(records) < limit:
            # What a poll returns was fetched while the previous batch was being scored: the client
            # asks for more only once its buffer is empty, i.e. now. One short extra poll takes the
            # events that arrived meanwhile, instead of leaving them a whole cycle for the next batch.
            records += _flatten(self.consumer.poll(timeout_ms=FRESH_POLL_MS, max_records=limit - len(records)))
        return records

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
        oldest = self.ledger.oldest()
        if oldest is not None and len(self.ledger) >= self.settings.stream_max_in_flight:
            oldest.delivery.wait(BACKPRESSURE_WAIT_S)
        delivered = self._deliver_leading()
        self.metrics.in_flight.set(len(self.ledger))
        return delivered

    def _deliver_leading(self) -> int:
        """Every leading batch whose results were all acknowledged is counted and committed, in order."""
        settled = self.ledger.settle()
        for batch in settled.delivered:
            batch.on_delivered()
        if settled.failure is not None:
            self._recover(settled)
        if settled.commit:
            self._commit_async(settled.commit)
            self.stats.commits += 1
            self._send_error = None
            self._retry_delay = 0.0
        return len(settled.delivered)

    def _recover(self, settled: Settled) -> None:
        """After a failed send: a new producer if needed, and re-read from the failed batch's first offsets."""
        error = settled.failure
        if not getattr(error, "retriable", False):
            self._replace_producer()
        self._seek(settled.rewind)
        self.stats.send_failures += 1
        self.metrics.send_failures.inc()
        self._send_error = f"results not acknowledged: {type(error).__name__}: {error}"
        self._retry_delay = min(max(0.5, self._retry_delay * 2), self.settings.stream_retry_max_seconds)
        log.error(
            "%s; %d batch(es) dropped uncommitted, re-reading %s in %.1f s",
            self._send_error,
            settled.dropped,
            ", ".join(f"{p[0]}[{p[1]}]@{o}" for p, o in sorted(settled.rewind.items())),
            self._retry_delay,
        )
        self._stopping.wait(self._retry_delay)

    def _finish(self) -> None:
        """On stop: wait for the batches in flight, count and commit what was delivered (synchronously)."""
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

    def _send_batch(self, records: list[Any]) -> None:
        """Decode, score and send one micro-batch; its offsets wait in the ledger for the acknowledgements."""
        with self.metrics.batch_duration.time():
            account = self._process(records)
        delivery = self.predictions.flush() + self.dead_letters.flush()
        shadow = self._shadow.flush() if self._shadow is not None else None
        self.window.flush()

        def delivered() -> None:
            account()
            if shadow is not None and self._shadow is not None:
                self._shadow.count_failures(shadow)

        first, after = span((r.topic, r.partition, r.offset) for r in records)
        self.ledger.add(first, after, delivery, delivered)
        self.metrics.in_flight.set(len(self.ledger))

    def _process(self, records: list[Any]) -> Callable[[], None]:
        """Score one batch into the sinks; returns what counts it once it is delivered."""
        scorer = self.models.current()  # one version for the whole batch, swapped only between batches
        assert scorer is not None
        if scorer.bundle.schema != self._schema:  # a reload passed the compatibility check: same fields
            self._schema = scorer.bundle.schema
            self._decoder = EventDecoder(self._schema)
        decoded = [self._decoder.decode(r.value) for r in records]
        dead: list[tuple[Any, str, str]] = [
            (r, d.error, "decode") for r, d in zip(records, decoded, strict=True) if d.error
        ]
        good = [(r, d) for r, d in zip(records, decoded, strict=True) if d.error is None]
        accepted = None
        if good:
            frame = pd.DataFrame.from_records([d.features for _, d in good], columns=self._schema.names)
            scored = self._score(scorer, frame)
            reasons = scored[REJECT_REASON].to_numpy()
            valid = pd.isna(reasons)
            accepted = scored if valid.all() else scored[valid]
            kept = [g for g, ok in zip(good, valid, strict=True) if ok]
            self.predictions.add(scorer, kept, accepted)
            dead += [(r, reason, "validate") for (r, _), reason, ok in zip(good, reasons, valid, strict=True) if not ok]
            if valid.any():
                self.window.add(accepted, kept)
                if self._shadow is not None:
                    self._shadow.score(scorer, frame[valid], accepted, kept)
        for record, reason, stage in dead:
            self.dead_letters.add(record, reason, stage)
            log.warning("dead letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        return lambda: self._account(scorer, records, dead, accepted)

    def _account(self, scorer: Scorer, records: list[Any], dead: list[Any], accepted: Any) -> None:
        predicted = len(records) - len(dead)
        self.stats.events += len(records)
        self.stats.predictions += predicted
        self.stats.dead_letters += len(dead)
        self.stats.batches += 1
        self.metrics.events.labels("predicted").inc(predicted)
        self.metrics.events.labels("dead_letter").inc(len(dead))
        for stage in ("decode", "validate"):
            if n := sum(1 for _, _, s in dead if s == stage):
                self.metrics.dead_letters.labels(stage).inc(n)
        if accepted is not None and len(accepted):
            self.metrics.record_predictions(
                scorer.version, accepted[PREDICTION].to_numpy(), accepted[CONFIDENCE].to_numpy(dtype=float)
            )
            event_ms = np.fromiter((r.timestamp for r in records), dtype=np.int64, count=len(records))
            self.metrics.record_latencies(np.maximum(time.time() * 1000 - event_ms, 0) / 1000)

    def _score(self, scorer: Scorer, frame: pd.DataFrame) -> pd.DataFrame:
        try:
            return scorer.score(frame)
        except SchemaError:
            # Decoding makes this rare; score one by one so a bad event cannot take its batch down.
            parts = []
            for i in range(len(frame)):
                try:
                    parts.append(scorer.score(frame.iloc[i : i + 1]))
                except SchemaError as exc:
                    parts.append(frame.iloc[i : i + 1].assign(**{REJECT_REASON: " ".join(exc.problems)}))
            return pd.concat(parts)

    def _same_partition_count(self, topic: str) -> bool:
        """Whether ``topic`` has as many partitions as the input (then results keep their event's partition)."""
        if topic not in self._same_partitions:
            output = self.producer.partitions_for(topic) or set()
            source = self.consumer.partitions_for_topic(self.settings.features_topic) or set()
            self._same_partitions[topic] = bool(output) and output == source
        return self._same_partitions[topic]

    # -- the client's side of commits and seeks ------------------------------------------------

    def _commit_async(self, offsets: dict[Partition, int]) -> None:
        """Commit without waiting: a lost commit is redone (``OffsetLedger.commit_due``) or covered by the next."""
        self.consumer.commit_async(_to_commit(offsets), callback=self._committed)

    def _committed(self, offsets: Any, result: Any) -> None:
        if isinstance(result, BaseException):
            self.metrics.commit_failures.inc()
            self.ledger.commit_failed()
            log.warning("offset commit failed (%s); it is made again", result)

    def _seek(self, offsets: dict[Partition, int]) -> None:
        """Read partitions still assigned to this member again from ``offsets`` (local only)."""
        assigned = self.consumer.assignment()
        for p, offset in offsets.items():
            if p in assigned:
                self.consumer.seek(TopicPartition(*p), offset)


def _flatten(polled: dict[Any, list[Any]]) -> list[Any]:
    return [record for records in polled.values() for record in records]


def _to_commit(offsets: dict[Partition, int]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {TopicPartition(*p): OffsetAndMetadata(offset, "", -1) for p, offset in offsets.items()}


class HandOverOnRevoke(ConsumerRebalanceListener):
    """Before partitions move to another member, commit what was delivered for them.

    The ledger gives the offsets (after a short wait for the batches in flight); the rest are left
    to the next owner, which reads them again (duplicates, never loss). kafka-python runs this on
    its IO thread, where a blocking ``commit()`` is refused, so the commit is sent without waiting:
    it is queued before the JoinGroup request on the same connection, while this member still owns
    the partitions. A partition that comes straight back is sought to its first undelivered offset.
    """

    def __init__(
        self,
        ledger: OffsetLedger,
        *,
        commit: Callable[[dict[Partition, int]], None],
        seek: Callable[[dict[Partition, int]], None],
    ) -> None:
        self.ledger = ledger
        self.commit = commit
        self.seek = seek

    def on_partitions_revoked(self, revoked: Any) -> None:
        offsets = self.ledger.hand_over(set(revoked), HANDOVER_WAIT_S)
        if offsets:
            self.commit(offsets)
        log.info(
            "partitions revoked: %s (committing %s)",
            sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked),
            {f"{p[0]}[{p[1]}]": o for p, o in sorted(offsets.items())},
        )

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.seek(self.ledger.returned(set(assigned)))
        log.info("partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


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
