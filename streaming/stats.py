"""Running totals of one consumer process, and the metrics a delivered micro-batch adds to."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitoring.metrics import ScoringMetrics
from scoring.scorer import CONFIDENCE, PREDICTION
from streaming.transform import ScoredBatch


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

    def account(self, batch: ScoredBatch, metrics: ScoringMetrics) -> None:
        """Count a micro-batch once every result of it was acknowledged (never before)."""
        records, dead, accepted = batch.records, batch.dead, batch.accepted
        predicted = len(records) - len(dead)
        self.events += len(records)
        self.predictions += predicted
        self.dead_letters += len(dead)
        self.batches += 1
        metrics.events.labels("predicted").inc(predicted)
        metrics.events.labels("dead_letter").inc(len(dead))
        version = str(batch.scorer.version)
        rejected = sum(1 for _, _, stage in dead if stage == "validate")
        metrics.arm_events.labels(batch.arm, version, "predicted").inc(predicted)
        metrics.arm_events.labels(batch.arm, version, "rejected").inc(rejected)  # the model's schema refused it
        metrics.arm_events.labels(batch.arm, version, "undecodable").inc(len(dead) - rejected)  # the input's fault
        for stage in ("decode", "validate"):
            if n := sum(1 for _, _, s in dead if s == stage):
                metrics.dead_letters.labels(stage).inc(n)
        if accepted is not None and len(accepted):
            metrics.record_predictions(
                batch.scorer.version, accepted[PREDICTION].to_numpy(), accepted[CONFIDENCE].to_numpy(dtype=float)
            )
            event_ms = np.fromiter((r.timestamp for r in records), dtype=np.int64, count=len(records))
            metrics.record_latencies(np.maximum(time.time() * 1000 - event_ms, 0) / 1000)
