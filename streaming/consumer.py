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

import pandas as pd
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from threadpoolctl import threadpool_limits

from scoring import SchemaError, Scorer, Settings, SinkError
from scoring.scorer import REJECT_REASON
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
from streaming.live_window import LiveWindow

log = logging.getLogger("scorepipe.stream")
ACK_TIMEOUT_S = 60.0


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


class StreamMetrics:
    """Prometheus metrics of one consumer, in a registry of its own (served on 127.0.0.1 if asked)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "scorepipe_stream_events", "Events consumed, by outcome", ["outcome"], registry=self.registry
        )
        self.batch_seconds = Histogram(
            "scorepipe_stream_batch_seconds",
            "Time to decode, score, publish and commit one micro-batch",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    def serve(self, port: int) -> None:
        start_http_server(port, addr="127.0.0.1", registry=self.registry)


class StreamConsumer:
    """Scores the features topic into the predictions and dead-letter topics."""

    def __init__(
        self,
        settings: Settings,
        scorer: Scorer,
        *,
        live_window: LiveWindow | None = None,
        metrics: StreamMetrics | None = None,
        client_id: str = "scorepipe-stream",
    ) -> None:
        self.settings = settings
        self.scorer = scorer
        self.live_window = live_window
        self.metrics = metrics or StreamMetrics()
        self.stats = StreamStats()
        self._stopping = threading.Event()
        self._pending: list[Any] = []
        self._schema = scorer.bundle.schema
        self._decoder = EventDecoder(self._schema)
        self._classes = [str(c) for c in scorer.bundle.classes]
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
        self.consumer.subscribe([settings.features_topic], listener=_CommitOnRevoke(self))
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
                self._fill_batch()
                if self._pending:
                    self._drain()
                    idle_since = time.monotonic()
                    if on_batch is not None:
                        on_batch(self.stats)
                elif not self.consumer.assignment():
                    idle_since = time.monotonic()  # waiting for partitions is not being idle
                elif idle_exit_seconds is not None and time.monotonic() - idle_since >= idle_exit_seconds:
                    break
            self._drain()
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        if self.live_window is not None:
            self.live_window.flush()
        self.producer.close(timeout=10)
        self.consumer.close()  # leaves the group, so its partitions move at once
        self._threads.restore_original_limits()

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

    def _drain(self) -> None:
        """Process what is pending and commit it; called by the loop and on partition revocation."""
        if not self._pending:
            return
        records, self._pending = self._pending, []
        with self.metrics.batch_seconds.time():
            self._process(records)
            self._commit(records)

    def _process(self, records: list[Any]) -> None:
        decoded = [self._decoder.decode(r.value) for r in records]
        dead: list[tuple[Any, str, str]] = [
            (r, d.error, "decode") for r, d in zip(records, decoded, strict=True) if d.error
        ]
        good = [(r, d) for r, d in zip(records, decoded, strict=True) if d.error is None]
        futures = []
        if good:
            scored = self._score([d.features for _, d in good])
            reasons = scored[REJECT_REASON].to_numpy()
            valid = pd.isna(reasons)
            accepted = scored[valid]
            futures += self._publish_predictions([g for g, ok in zip(good, valid, strict=True) if ok], accepted)
            dead += [(r, reason, "validate") for (r, _), reason, ok in zip(good, reasons, valid, strict=True) if not ok]
            if self.live_window is not None and valid.any():
                window = accepted.drop(columns=[REJECT_REASON])
                window.insert(0, EVENT_ID, [d.event_id for (_, d), ok in zip(good, valid, strict=True) if ok])
                self.live_window.append(window.reset_index(drop=True))
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
        self.stats.events += len(records)
        self.stats.predictions += len(records) - len(dead)
        self.stats.dead_letters += len(dead)
        self.stats.batches += 1
        self.metrics.events.labels("predicted").inc(len(records) - len(dead))
        self.metrics.events.labels("dead_letter").inc(len(dead))

    def _score(self, events: list[dict[str, Any]]) -> pd.DataFrame:
        frame = pd.DataFrame.from_records(events, columns=self._schema.names)
        try:
            return self.scorer.score(frame)
        except SchemaError:
            # Decoding makes this rare; score one by one so a bad event cannot take its batch down.
            parts = []
            for i in range(len(frame)):
                try:
                    parts.append(self.scorer.score(frame.iloc[i : i + 1]))
                except SchemaError as exc:
                    parts.append(frame.iloc[i : i + 1].assign(**{REJECT_REASON: " ".join(exc.problems)}))
            return pd.concat(parts)

    def _publish_predictions(self, good: list[tuple[Any, Any]], scored: pd.DataFrame) -> list[Any]:
        if not good:
            return []
        proba = scored[self.scorer.proba_columns].to_numpy()
        predictions = scored["prediction"].to_numpy(dtype=object)
        confidence = scored["confidence"].to_numpy()
        version = int(self.scorer.version)
        scored_at = scored["scored_at"].iloc[0].isoformat(timespec="milliseconds")
        version_header = str(version).encode()
        scored_at_header = scored_at.encode()
        event_times = iso_ms([record.timestamp for record, _ in good])
        topic = self.settings.predictions_topic
        futures = []
        for i, (record, decoded) in enumerate(good):
            body = encode_prediction(
                decoded.event_id,
                prediction=predictions[i],
                probabilities=dict(zip(self._classes, proba[i].tolist(), strict=True)),
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
        self.stats.commits += 1


class _CommitOnRevoke(ConsumerRebalanceListener):
    """Before partitions move to another member, finish and commit what was fetched from them."""

    def __init__(self, owner: StreamConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.owner._drain()
        log.info("partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


def score_stream(settings: Settings, scorer: Scorer, **kwargs: Any) -> StreamConsumer:
    """Build a consumer writing its live window under ``settings.live_dir``."""
    window = LiveWindow(
        settings.live_dir, roll_rows=settings.live_window_rows, roll_seconds=settings.live_window_seconds
    )
    return StreamConsumer(settings, scorer, live_window=window, **kwargs)
