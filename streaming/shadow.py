"""The shadow challenger on the stream: scored on the champion's accepted rows, kept off its path.

Its predictions go to the shadow topic and its own live window; agreement with the champion is
counted per (champion, challenger) pair. Whatever the challenger raises is counted and logged,
never raised into the champion's batch, and its sends never hold back a commit.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from monitoring.metrics import ScoringMetrics
from scoring import Scorer
from scoring.agreement import Agreement, compare_batch
from scoring.scorer import REJECT_REASON
from scoring.watcher import ModelWatcher
from streaming.sinks import PredictionSink, WindowSink
from streaming.transport.base import Delivery, TransportError

log = logging.getLogger("scorepipe.stream")


class ShadowScorer:
    """Scores a challenger beside the champion and publishes its results apart."""

    def __init__(
        self, models: ModelWatcher, predictions: PredictionSink, window: WindowSink, metrics: ScoringMetrics
    ) -> None:
        self.models = models
        self.predictions = predictions
        self.window = window
        self.metrics = metrics
        self.agreements: dict[tuple[int, int], Agreement] = {}

    def score(self, champion: Scorer, frame: pd.DataFrame, accepted: pd.DataFrame, events: list[Any]) -> None:
        """Score the champion's accepted rows (``frame``) with the challenger; publish and compare."""
        challenger = self.models.current()
        if challenger is None or challenger.version == champion.version:
            return
        try:
            shadow = challenger.score(frame)
        except Exception as exc:  # noqa: BLE001 - a broken challenger is reported and skipped, whatever it raises
            self.metrics.shadow_errors.labels("score").inc()
            log.warning("shadow: challenger v%s failed on a batch of %d: %s", challenger.version, len(frame), exc)
            return
        both = shadow[REJECT_REASON].isna().to_numpy()
        if not both.all():
            self.metrics.shadow_errors.labels("validate").inc(int((~both).sum()))
        self.metrics.record_agreement(*compare_batch(self.agreements, champion, challenger, accepted, shadow))
        mirrored = shadow[both]
        rows = [e for e, ok in zip(events, both, strict=True) if ok]
        self.window.add(mirrored, rows)
        try:
            self.predictions.add(challenger, rows, mirrored)
        except TransportError as exc:
            self.metrics.shadow_errors.labels("publish").inc(len(rows))
            log.warning("shadow: cannot publish to %s: %s", self.predictions.topic, exc)

    def flush(self) -> Delivery:
        return self.predictions.flush()

    def count_failures(self, delivery: Delivery) -> None:
        """Count the challenger's predictions that were not acknowledged (the champion is unaffected)."""
        failed = delivery.failures()
        if failed:
            self.metrics.shadow_errors.labels("publish").inc(failed)
            log.warning("shadow: %d challenger predictions were not acknowledged (champion unaffected)", failed)

    def close(self) -> None:
        self.window.close()
        self.models.stop()
