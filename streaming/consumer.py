"""The stream scorer: Kafka micro-batches through the shared ``Scorer``, at least once.

For each micro-batch (up to ``stream_batch_events`` events or ``stream_batch_ms`` of waiting):
decode every event, score the decodable ones as one frame, publish one prediction per scored
event and send every other event, unchanged, to the dead-letter topic with the reason in its
headers; wait until the broker has acknowledged all of it, and only then commit the batch's
offsets. A crash before the commit means the batch is consumed again (duplicates, never loss).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
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
ACK_TIMEOUT_S = 60.0
BROKER_CHECK_S = 5.0  # how often end offsets are asked for (consumer lag, broker reachability)


@dataclass
class StreamStats:
    """Running totals of one consumer process."""

    events: int = 0
    predictions: int = 0
    dead_letters: int = 0
    batches: int = 0
    commits: int = 0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "predictions": self.predictions,
            "dead_letters": self.dead_letters,
            "batches": self.batches,
            "commits": self.commits,
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
        self.live_window = live_window
        self.shadow_window = shadow_window
        self.metrics = metrics or ScoringMetrics()
        self.health = health or Health()
        self.stats = StreamStats()
        self.agreements: dict[tuple[int, int], Agreement] = {}
        self._stopping = threading.Event()
        self._pending: list[Any] = []
        serving = self.models.current()
        if serving is None:
            raise SinkError(f"no model to score with for {self.models.ref!r}")
        self._schema = serving.bundle.schema
        self._decoder = EventDecoder(self._schema)
        self._next_offsets: dict[TopicPartition, int] = {}
        self._rewind: dict[TopicPartition, int] = {}
        self._assigned = 0
        self._broker_checked: float | None = None
        self._broker_error: str | None = "not checked yet"
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
        self.producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=f"{client_id}-producer",
            acks="all",
            linger_ms=5,
            batch_size=256 * 1024,
        )
        self.consumer.subscribe([settings.features_topic], listener=_ReleaseOnRevoke(self))
        # Micro-batches are small: one OpenMP thread scores them faster than two (no per-tree
        # fork/join) and leaves the other core to the Kafka client's network threads.
        self._threads = threadpool_limits(limits=1, user_api="openmp")

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        """Ask the loop to finish the batch in hand, flush, commit and return (signal-safe)."""
        self._stopping.set()

    def run(self, *, idle_exit_seconds: float | None = None, on_batch: Callable[[StreamStats], None] | None = None):
        """Consume until stopped (SIGTERM, SIGINT, ``stop()``) or idle for ``idle_exit_seconds``."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        idle_since = time.monotonic()
        try:
            while not self._stopping.is_set():
                self.health.beat()
                self._fill_batch()
                self._assigned = len(self.consumer.assignment())
                self._check_broker()
                if self._pending:
                    self._drain()
                    idle_since = time.monotonic()
                    if on_batch is not None:
                        on_batch(self.stats)
                elif not self._assigned:
                    idle_since = time.monotonic()  # waiting for partitions is not being idle
                elif idle_exit_seconds is not None and time.monotonic() - idle_since >= idle_exit_seconds:
                    break
            self._drain()
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        for window in (self.live_window, self.shadow_window):
            if window is not None:
                window.flush()
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

    def _fill_batch(self) -> None:
        """Poll until the batch is full, its time is up, or a stop is asked for."""
        limit = self.settings.stream_batch_events
        deadline: float | None = None
        while len(self._pending) < limit and not self._stopping.is_set():
            if deadline is None:
                timeout_ms = 500
            else:
                timeout_ms = int((deadline - time.monotonic()) * 1000)
                if timeout_ms <= 0:
                    break
            polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=limit - len(self._pending))
            for records in polled.values():
                self._pending.extend(records)
            if self._pending and deadline is None:
                deadline = time.monotonic() + self.settings.stream_batch_ms / 1000
            elif not self._pending:
                return  # idle: let run() check for stop and idleness

    def _release(self, revoked: set[TopicPartition]) -> int:
        """Forget pending records of ``revoked`` partitions (they are not committed); return how many.

        A partition handed straight back to this member keeps its fetch position in kafka-python,
        so the first dropped offset is remembered and ``_rewind`` seeks back to it.
        """
        kept = []
        for record in self._pending:
            tp = TopicPartition(record.topic, record.partition)
            if tp in revoked:
                self._rewind[tp] = min(self._rewind.get(tp, record.offset), record.offset)
            else:
                kept.append(record)
        dropped = len(self._pending) - len(kept)
        self._pending = kept
        for tp in revoked:
            self._next_offsets.pop(tp, None)
        return dropped

    def _rewind_returned(self, assigned: set[TopicPartition]) -> None:
        """Seek partitions that came back after a revocation to their first unscored offset (local only)."""
        for tp, offset in self._rewind.items():
            if tp in assigned:
                self.consumer.seek(tp, offset)
        self._rewind.clear()

    def _drain(self) -> None:
        """Process what is pending and commit it, before the next poll."""
        if not self._pending:
            return
        records, self._pending = self._pending, []
        with self.metrics.batch_duration.time():
            self._process(records)
            self._commit(records)

    def _process(self, records: list[Any]) -> None:
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
            accepted = scored[valid]
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
        try:
            self.producer.flush(timeout=ACK_TIMEOUT_S)
            for future in futures:
                if not future.succeeded():  # after flush every future is done; get() raises its error
                    future.get(timeout=ACK_TIMEOUT_S)
        except KafkaError as exc:
            raise SinkError(f"the broker did not acknowledge a batch of {len(records)} results: {exc}") from exc
        failed_shadow = sum(1 for f in shadow_futures if not f.succeeded())
        if failed_shadow:
            self.metrics.shadow_errors.labels("publish").inc(failed_shadow)
            log.warning("shadow: %d challenger predictions were not acknowledged (champion unaffected)", failed_shadow)
        self._account(scorer, records, dead, accepted)

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
            futures.append(self.producer.send(topic, key=decoded.event_id.encode(), value=body, headers=headers))
        return futures

    def _dead_letter(self, record: Any, reason: str, stage: str) -> Any:
        headers = list(record.headers or []) + [
            (DLQ_REASON, reason.encode()),
            (DLQ_STAGE, stage.encode()),
            (DLQ_TOPIC, record.topic.encode()),
            (DLQ_PARTITION, str(record.partition).encode()),
            (DLQ_OFFSET, str(record.offset).encode()),
        ]
        return self.producer.send(self.settings.dlq_topic, key=record.key, value=record.value, headers=headers)

    def _commit(self, records: list[Any]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, -1), record.offset + 1)
        self.consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()})
        self._next_offsets.update(offsets)
        self.stats.commits += 1


def _window_rows(scored: pd.DataFrame, rows: list[tuple[Any, Any]]) -> pd.DataFrame:
    """Scored rows for the live window, with their event ids and without the reject column."""
    window = scored.drop(columns=[REJECT_REASON])
    window.insert(0, EVENT_ID, [decoded.event_id for _, decoded in rows])
    return window.reset_index(drop=True)


class _ReleaseOnRevoke(ConsumerRebalanceListener):
    """Before partitions move to another member, drop what was fetched from them but not yet scored.

    Every scored batch is committed before the next poll, so at a rebalance the only uncommitted
    records are the ones still pending; the new owner reads them again from the committed offset
    (no loss, no duplicate). The listener runs on kafka-python's IO thread, where a blocking call
    such as ``commit()`` is refused, so it does no I/O at all.
    """

    def __init__(self, owner: StreamConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        dropped = self.owner._release(set(revoked))
        log.info(
            "partitions revoked: %s (%d fetched, unscored events left for the next owner)",
            sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked),
            dropped,
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
