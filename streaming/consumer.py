"""The stream scorer: Kafka micro-batches through the shared ``Scorer``, at least once, pipelined.

Each poll returns whatever is buffered (at most ``stream_batch_events``), and it is scored at
once: a quiet stream is scored event by event, a busy one in full batches, because events pile up
while the previous batch is scored. For each micro-batch: decode every event, score the decodable
ones as one frame, send one prediction per scored event and every other event, unchanged, to the
dead-letter topic with the reason in its headers. The consumer does not wait for the broker's
acknowledgements before polling again: up to ``stream_max_in_flight`` batches are in flight, and
offsets are committed in order, only for the leading batches whose every result was acknowledged.
A failed send stops commits at that batch and re-reads from its first offset; a crash re-reads
from the last commit. Either way: duplicates, never loss.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from threadpoolctl import threadpool_limits

from monitoring.health import Health
from monitoring.metrics import ScoringMetrics
from scoring import SchemaError, Scorer, Settings, SinkError
from scoring.agreement import Agreement
from scoring.scorer import CONFIDENCE, PREDICTION, REJECT_REASON
from scoring.watcher import FixedModel, ModelWatcher
from streaming.events import (
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_STAGE,
    DLQ_TOPIC,
    EVENT_ID,
    EventDecoder,
    encode_prediction,
    iso_ms,
)
from streaming.live_window import SHADOW_DIR, LiveWindow

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


@dataclass
class _Sent:
    """One micro-batch whose results were handed to the producer; committable once all are acknowledged."""

    first: dict[TopicPartition, int]  # first offset per partition: where to re-read from if a send fails
    after: dict[TopicPartition, int]  # the offset to commit per partition (last + 1)
    futures: list[Any]
    shadow_futures: list[Any]
    account: Callable[[], None]  # counts the batch once it is delivered

    def done(self) -> bool:
        return all(f.is_done for f in self.futures)

    def error(self) -> BaseException | None:
        """The first send error, once every future is done (None if all were acknowledged)."""
        return next((f.exception for f in self.futures if f.failed()), None)


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
        self.live_window = live_window
        self.shadow_window = shadow_window
        self.metrics = metrics or ScoringMetrics()
        self.health = health or Health()
        self.stats = StreamStats()
        self.agreements: dict[tuple[int, int], Agreement] = {}
        self._stopping = threading.Event()
        self._sent: deque[_Sent] = deque()
        self._lock = threading.Lock()  # the rebalance listener (Kafka's IO thread) and the loop share _sent
        serving = self.models.current()
        if serving is None:
            raise SinkError(f"no model to score with for {self.models.ref!r}")
        self._schema = serving.bundle.schema
        self._decoder = EventDecoder(self._schema)
        self._next_offsets: dict[TopicPartition, int] = {}
        self._rewind: dict[TopicPartition, int] = {}
        self._same_partitions: dict[str, bool] = {}
        self._assigned = 0
        self._broker_checked: float | None = None
        self._broker_error: str | None = "not checked yet"
        self._send_error: str | None = None
        self._retry_delay = 0.0
        self.metrics.set_model(self.models.ref, serving.version)
        if shadow is not None:
            self.metrics.set_model(shadow.ref, shadow.version)
        self._add_readiness_checks()
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
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
        self._client_id = client_id
        self.producer = self._new_producer()
        self.consumer.subscribe([settings.features_topic], listener=_FinishOnRevoke(self))
        # Micro-batches are small: one OpenMP thread scores them faster than two (no per-tree
        # fork/join) and leaves the other core to the Kafka client's network threads.
        self._threads = threadpool_limits(limits=1, user_api="openmp")

    def _new_producer(self) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
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
        return seconds is not None and not self._sent and time.monotonic() - since >= seconds

    def close(self) -> None:
        for window in (self.live_window, self.shadow_window):
            if window is not None:
                window.close()
        self.producer.close(timeout=10)
        self.consumer.close()  # leaves the group, so its partitions move at once
        self._threads.restore_original_limits()
        self.models.stop()
        if self.shadow is not None:
            self.shadow.stop()

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
            done = self._next_offsets.get(tp)
            if done is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, end - done))

    # -- the loop ------------------------------------------------------------------------------

    def _poll(self) -> list[Any]:
        """Whatever is buffered, at once (a partial batch never waits to fill)."""
        if not self._sent:
            timeout_ms = IDLE_POLL_MS  # wait for events: poll returns as soon as any arrive
        elif self._sent[0].done():
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
        full = len(self._sent) >= self.settings.stream_max_in_flight
        paused = self.consumer.paused()
        if full and not paused:
            self.consumer.pause(*self.consumer.assignment())
        elif not full and paused:
            self.consumer.resume(*paused)

    def _settle(self) -> int:
        """Account and commit the leading acknowledged batches; at the bound, wait for the oldest first."""
        if len(self._sent) >= self.settings.stream_max_in_flight:
            _wait_for(self._sent[0].futures, BACKPRESSURE_WAIT_S)
        delivered = self._deliver_leading()
        self.metrics.in_flight.set(len(self._sent))
        return delivered

    def _deliver_leading(self) -> int:
        """Every leading batch whose results were all acknowledged is counted and committed, in order.

        At the first batch with a failed send, nothing after it is committed: see ``_recover``.
        """
        delivered = 0
        offsets: dict[TopicPartition, int] = {}
        with self._lock:
            while self._sent and self._sent[0].done():
                batch = self._sent[0]
                error = batch.error()
                if error is not None:
                    self._recover(error)
                    break
                self._sent.popleft()
                batch.account()
                self._count_shadow_failures(batch)
                offsets.update(batch.after)
                delivered += 1
        if offsets:
            self._commit(offsets)
            self._send_error = None
            self._retry_delay = 0.0
        return delivered

    def _recover(self, error: BaseException) -> None:
        """Drop the failed batch and every later one, and re-read from the failed batch's first offsets."""
        rewind: dict[TopicPartition, int] = {}
        for batch in self._sent:
            for tp, offset in batch.first.items():
                rewind[tp] = min(rewind.get(tp, offset), offset)
        dropped = len(self._sent)
        self._sent.clear()
        if not getattr(error, "retriable", False):
            self._replace_producer()
        assigned = self.consumer.assignment()
        for tp, offset in rewind.items():
            if tp in assigned:
                self.consumer.seek(tp, offset)
        self.stats.send_failures += 1
        self.metrics.send_failures.inc()
        self._send_error = f"results not acknowledged: {type(error).__name__}: {error}"
        self._retry_delay = min(max(0.5, self._retry_delay * 2), self.settings.stream_retry_max_seconds)
        log.error(
            "%s; %d batch(es) dropped uncommitted, re-reading %s in %.1f s",
            self._send_error,
            dropped,
            ", ".join(f"{tp.topic}[{tp.partition}]@{o}" for tp, o in sorted(rewind.items())),
            self._retry_delay,
        )
        self._stopping.wait(self._retry_delay)

    def _finish(self) -> None:
        """On stop: wait for the batches in flight, count and commit what was delivered (synchronously)."""
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while self._sent and time.monotonic() < deadline:
            _wait_for(self._sent[0].futures, deadline - time.monotonic())
            if not self._deliver_leading() and self._sent and not self._sent[0].done():
                break
        if self._sent:
            log.warning("stopping with %d batch(es) unacknowledged: they will be read again", len(self._sent))
        self._sent.clear()
        owned = {tp: offset for tp, offset in self._next_offsets.items() if tp in self.consumer.assignment()}
        if owned:
            try:
                self.consumer.commit(_to_commit(owned))
            except KafkaError as exc:
                self.metrics.commit_failures.inc()
                log.warning("final commit failed (%s): the last batches will be read again", exc)

    def _send_batch(self, records: list[Any]) -> None:
        """Decode, score and send one micro-batch; its offsets wait in ``_sent`` for the acknowledgements."""
        with self.metrics.batch_duration.time():
            futures, shadow_futures, account = self._process(records)
        first: dict[TopicPartition, int] = {}
        after: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if tp not in first:
                first[tp] = record.offset
            after[tp] = record.offset + 1
        with self._lock:
            self._sent.append(_Sent(first, after, futures, shadow_futures, account))
        self.metrics.in_flight.set(len(self._sent))

    def _process(self, records: list[Any]) -> tuple[list[Any], list[Any], Callable[[], None]]:
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
        futures = []
        shadow_futures: list[Any] = []
        accepted = None
        if good:
            frame = pd.DataFrame.from_records([d.features for _, d in good], columns=self._schema.names)
            scored = self._score(scorer, frame)
            reasons = scored[REJECT_REASON].to_numpy()
            valid = pd.isna(reasons)
            accepted = scored if valid.all() else scored[valid]
            kept = [g for g, ok in zip(good, valid, strict=True) if ok]
            futures += self._publish(scorer, kept, accepted, self.settings.predictions_topic)
            dead += [(r, reason, "validate") for (r, _), reason, ok in zip(good, reasons, valid, strict=True) if not ok]
            if self.live_window is not None and valid.any():
                self.live_window.append(_window_rows(accepted, kept))
            if self.shadow is not None and valid.any():
                shadow_futures = self._shadow_score(scorer, frame[valid], accepted, kept)
        for record, reason, stage in dead:
            futures.append(self._dead_letter(record, reason, stage))
            log.warning("dead letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        return futures, shadow_futures, lambda: self._account(scorer, records, dead, accepted)

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

    def _shadow_score(
        self, champion: Scorer, frame: pd.DataFrame, accepted: pd.DataFrame, kept: list[Any]
    ) -> list[Any]:
        """Score the champion's accepted rows with the challenger; publish and compare; never raise into its path."""
        assert self.shadow is not None
        challenger = self.shadow.current()
        if challenger is None or challenger.version == champion.version:
            return []
        try:
            shadow = challenger.score(frame)
        except Exception as exc:  # noqa: BLE001 - a broken challenger is reported and skipped, whatever it raises
            self.metrics.shadow_errors.labels("score").inc()
            log.warning("shadow: challenger v%s failed on a batch of %d: %s", challenger.version, len(frame), exc)
            return []
        both = shadow[REJECT_REASON].isna().to_numpy()
        if not both.all():
            self.metrics.shadow_errors.labels("validate").inc(int((~both).sum()))
        key = (champion.version, challenger.version)
        total = self.agreements.setdefault(key, Agreement(*key))
        batch = Agreement(*key)
        diff = batch.add(accepted, shadow, champion.bundle.classes)
        total.merge(batch)
        self.metrics.record_agreement(batch, diff, total)
        mirrored = shadow[both]
        rows = [k for k, ok in zip(kept, both, strict=True) if ok]
        if self.shadow_window is not None and len(mirrored):
            self.shadow_window.append(_window_rows(mirrored, rows))
        try:
            return self._publish(challenger, rows, mirrored, self.settings.shadow_topic)
        except KafkaError as exc:
            self.metrics.shadow_errors.labels("publish").inc(len(rows))
            log.warning("shadow: cannot publish to %s: %s", self.settings.shadow_topic, exc)
            return []

    def _publish(self, scorer: Scorer, good: list[tuple[Any, Any]], scored: pd.DataFrame, topic: str) -> list[Any]:
        """Send one prediction per scored event to ``topic``, keyed by event id; return the futures."""
        if not good:
            return []
        proba = scored[scorer.proba_columns].to_numpy()
        predictions = scored[PREDICTION].to_numpy(dtype=object)
        confidence = scored[CONFIDENCE].to_numpy()
        version = int(scorer.version)
        classes = [str(c) for c in scorer.bundle.classes]
        scored_at = scored["scored_at"].iloc[0].isoformat(timespec="milliseconds")
        version_header = str(version).encode()
        scored_at_header = scored_at.encode()
        event_times = iso_ms([record.timestamp for record, _ in good])
        same_partitions = self._same_partition_count(topic)
        futures = []
        for i, (record, decoded) in enumerate(good):
            body = encode_prediction(
                decoded.event_id,
                prediction=predictions[i],
                probabilities=dict(zip(classes, proba[i].tolist(), strict=True)),
                confidence=float(confidence[i]),
                model_version=version,
                event_time=event_times[i],
                scored_at=scored_at,
            )
            headers = [
                ("model_version", version_header),
                ("event_time_ms", str(record.timestamp).encode()),
                ("scored_at", scored_at_header),
            ]
            futures.append(
                self.producer.send(
                    topic,
                    key=decoded.event_id.encode(),
                    value=body,
                    headers=headers,
                    partition=record.partition if same_partitions else None,
                )
            )
        return futures

    def _same_partition_count(self, topic: str) -> bool:
        """Whether ``topic`` has as many partitions as the input (then results keep their event's partition).

        An event's key decides its input partition, so writing the result to the same partition
        number keeps every key's results in order, as the default partitioner would, and skips
        kafka-python's per-message partitioner (a pure-Python murmur2 of the key).
        """
        if topic not in self._same_partitions:
            output = self.producer.partitions_for(topic) or set()
            source = self.consumer.partitions_for_topic(self.settings.features_topic) or set()
            self._same_partitions[topic] = bool(output) and output == source
        return self._same_partitions[topic]

    def _dead_letter(self, record: Any, reason: str, stage: str) -> Any:
        headers = list(record.headers or []) + [
            (DLQ_REASON, reason.encode()),
            (DLQ_STAGE, stage.encode()),
            (DLQ_TOPIC, record.topic.encode()),
            (DLQ_PARTITION, str(record.partition).encode()),
            (DLQ_OFFSET, str(record.offset).encode()),
        ]
        return self.producer.send(self.settings.dlq_topic, key=record.key, value=record.value, headers=headers)

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit without waiting: a lost commit is covered by the next one, or by the final synchronous one."""
        self.consumer.commit_async(_to_commit(offsets), callback=self._committed)
        self._next_offsets.update(offsets)
        self.stats.commits += 1

    def _committed(self, offsets: Any, result: Any) -> None:
        if isinstance(result, BaseException):
            self.metrics.commit_failures.inc()
            log.warning("offset commit failed (%s); the next commit covers it", result)

    def _count_shadow_failures(self, batch: _Sent) -> None:
        failed = sum(1 for f in batch.shadow_futures if f.is_done and f.failed())
        if failed:
            self.metrics.shadow_errors.labels("publish").inc(failed)
            log.warning("shadow: %d challenger predictions were not acknowledged (champion unaffected)", failed)

    # -- rebalances ----------------------------------------------------------------------------

    def _hand_over(self, revoked: set[TopicPartition]) -> dict[TopicPartition, int]:
        """The offsets safe to commit for ``revoked`` partitions before they move to another member.

        Waits briefly for their batches in flight; only acknowledged leading batches count. Runs on
        the Kafka client's IO thread while the loop is blocked in ``poll()``.
        """
        with self._lock:
            deadline = time.monotonic() + HANDOVER_WAIT_S
            for batch in self._sent:
                if revoked & batch.first.keys():
                    _wait_for(batch.futures, deadline - time.monotonic())
            # Delivered batches first: their own commit may have been lost (commits do not block).
            offsets = {tp: self._next_offsets[tp] for tp in revoked if tp in self._next_offsets}
            acknowledged = True
            for batch in self._sent:
                acknowledged = acknowledged and batch.done() and batch.error() is None
                for tp in revoked & batch.first.keys():
                    if acknowledged:
                        offsets[tp] = batch.after[tp]
                    else:
                        # Not delivered: if this partition comes straight back, read it again from here.
                        self._rewind.setdefault(tp, batch.first[tp])
                    del batch.first[tp], batch.after[tp]
            for tp in revoked:
                self._next_offsets.pop(tp, None)
        return offsets

    def _rewind_returned(self, assigned: set[TopicPartition]) -> None:
        """Seek partitions that came back after a revocation to their first undelivered offset (local only)."""
        for tp, offset in self._rewind.items():
            if tp in assigned:
                self.consumer.seek(tp, offset)
        self._rewind.clear()


def _flatten(polled: dict[Any, list[Any]]) -> list[Any]:
    return [record for records in polled.values() for record in records]


def _to_commit(offsets: dict[TopicPartition, int]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}


def _wait_for(futures: list[Any], timeout: float) -> None:
    """Wait up to ``timeout`` seconds for every future; their outcome is read by the caller."""
    deadline = time.monotonic() + timeout
    for future in futures:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        if not future.is_done:
            with contextlib.suppress(KafkaError):  # failed or not yet done: the caller reads the future
                future.get(timeout=remaining)


def _window_rows(scored: pd.DataFrame, rows: list[tuple[Any, Any]]) -> dict[str, Any]:
    """Scored rows' columns for the live window, with their event ids and without the reject column."""
    columns: dict[str, Any] = {EVENT_ID: np.array([decoded.event_id for _, decoded in rows], dtype=object)}
    columns.update({c: scored[c] for c in scored.columns if c != REJECT_REASON})
    return columns  # no frame per batch: the window joins columns once per file


class _FinishOnRevoke(ConsumerRebalanceListener):
    """Before partitions move to another member, commit what was delivered for them.

    Batches in flight for the revoked partitions get a short wait for their acknowledgements, and
    the acknowledged ones are committed; the rest are left to the next owner, which reads them
    again (duplicates, never loss). kafka-python runs this on its IO thread, where a blocking
    ``commit()`` is refused, so the commit is sent without waiting: it is queued before the
    JoinGroup request on the same connection, while this member still owns the partitions. A
    partition that comes straight back is sought back to its first undelivered offset.
    """

    def __init__(self, owner: StreamConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        offsets = self.owner._hand_over(set(revoked))
        if offsets:
            self.owner.consumer.commit_async(_to_commit(offsets), callback=self.owner._committed)
        log.info(
            "partitions revoked: %s (committing %s)",
            sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked),
            {f"{tp.topic}[{tp.partition}]": o for tp, o in sorted(offsets.items())},
        )

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.owner._rewind_returned(set(assigned))
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
