"""Where a micro-batch's results go: predictions, dead letters, the live window, the shadow's topic.

Each sink takes results with ``add`` and, on ``flush``, hands back the delivery of what it was
given since the last flush: the offset ledger commits a batch only once the deliveries of its
sinks are acknowledged. Topic sinks send through a producer owned by the consumer (replaced
after a fatal error, so they look it up at each send); the live window writes Parquet files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from scoring import Scorer
from scoring.live_window import LiveWindow
from scoring.scorer import CONFIDENCE, PREDICTION, REJECT_REASON
from streaming.events import (
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_STAGE,
    DLQ_TOPIC,
    EVENT_ID,
    encode_prediction,
    iso_ms,
)
from streaming.transport.base import Delivery, Producer, Record


class _TopicSink:
    def __init__(self, producer: Callable[[], Producer], topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._futures: list[Any] = []

    def flush(self) -> Delivery:
        """The delivery of everything sent since the last flush."""
        sent, self._futures = self._futures, []
        return self.producer().delivery(sent)


class PredictionSink(_TopicSink):
    """One prediction per scored event to a topic (predictions, or the shadow's), keyed by event id.

    With ``same_partition`` (the topic has as many partitions as the input), a result keeps its
    event's partition number: every key's results stay in order, as the default partitioner would
    keep them, without kafka-python's per-message partitioner (a pure-Python murmur2 of the key).
    """

    def __init__(self, producer: Callable[[], Producer], topic: str, same_partition: Callable[[str], bool]) -> None:
        super().__init__(producer, topic)
        self.same_partition = same_partition

    def add(self, scorer: Scorer, events: list[tuple[Any, Any]], scored: pd.DataFrame, arm: str = "champion") -> None:
        """``events`` are (record, decoded event) pairs, row for row with ``scored``; ``arm`` is the split's side."""
        if not events:
            return
        proba = scored[scorer.proba_columns].to_numpy()
        predictions = scored[PREDICTION].to_numpy(dtype=object)
        confidence = scored[CONFIDENCE].to_numpy()
        version = int(scorer.version)
        classes = [str(c) for c in scorer.bundle.classes]
        scored_at = scored["scored_at"].iloc[0].isoformat(timespec="milliseconds")
        version_header = str(version).encode()
        scored_at_header = scored_at.encode()
        arm_header = arm.encode()
        event_times = iso_ms([record.timestamp for record, _ in events])
        keep_partition = self.same_partition(self.topic)
        producer = self.producer()
        for i, (record, decoded) in enumerate(events):
            body = encode_prediction(
                decoded.event_id,
                prediction=predictions[i],
                probabilities=dict(zip(classes, proba[i].tolist(), strict=True)),
                confidence=float(confidence[i]),
                model_version=version,
                event_time=event_times[i],
                scored_at=scored_at,
                arm=arm,
            )
            headers = [
                ("model_version", version_header),
                ("event_time_ms", str(record.timestamp).encode()),
                ("scored_at", scored_at_header),
                ("arm", arm_header),
            ]
            self._futures.append(
                producer.send(
                    self.topic,
                    key=decoded.event_id.encode(),
                    value=body,
                    headers=headers,
                    partition=record.partition if keep_partition else None,
                )
            )


class DeadLetterSink(_TopicSink):
    """Every event that cannot be scored, unchanged, with why, at which stage and where it came from."""

    def add(self, record: Record, reason: str, stage: str) -> None:
        headers = list(record.headers or []) + [
            (DLQ_REASON, reason.encode()),
            (DLQ_STAGE, stage.encode()),
            (DLQ_TOPIC, record.topic.encode()),
            (DLQ_PARTITION, str(record.partition).encode()),
            (DLQ_OFFSET, str(record.offset).encode()),
        ]
        self._futures.append(self.producer().send(self.topic, key=record.key, value=record.value, headers=headers))


class WindowSink:
    """Scored rows (features, scores, event ids) appended to a live window for drift reports."""

    def __init__(self, window: LiveWindow | None) -> None:
        self.window = window

    def add(self, scored: pd.DataFrame, events: list[tuple[Any, Any]]) -> None:
        if self.window is None or not events:
            return
        columns: dict[str, Any] = {EVENT_ID: np.array([decoded.event_id for _, decoded in events], dtype=object)}
        columns.update({c: scored[c] for c in scored.columns if c != REJECT_REASON})
        self.window.append(columns)  # no frame per batch: the window joins columns once per file

    def flush(self) -> None:
        """Nothing to wait for: the window rolls its files on its own (size or age)."""

    def idle(self) -> None:
        """Nothing was polled: rows older than the window's age limit are written all the same."""
        if self.window is not None:
            self.window.roll_if_due()

    def close(self) -> None:
        if self.window is not None:
            self.window.close()
