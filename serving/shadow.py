"""The server's shadow challenger: scored on its own thread, off the request path.

As each batch is scored, what the champion scored is offered here, a queue put that the answer
never waits on; the bounded queue takes it (when the challenger falls behind, batches are dropped
and counted, never waited for), and one thread scores the challenger on the same rows, counts agreement per (champion,
challenger) pair in the metrics the stream's shadow uses, and appends its rows to the shadow's
live window (``_shadow/``) for drift and performance reports. Whatever the challenger raises is
counted and logged, never returned to a client.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import numpy as np
import pandas as pd

from monitoring.metrics import ScoringMetrics
from scoring import Scorer
from scoring.agreement import Agreement
from scoring.layout import EVENT_ID
from scoring.live_window import LiveWindow
from scoring.scorer import REJECT_REASON
from scoring.watcher import ModelWatcher

log = logging.getLogger("scorepipe.serve")
QUEUE_BATCHES = 64


class HttpShadow:
    """A challenger scored off the request path on what the champion scored."""

    def __init__(self, models: ModelWatcher, metrics: ScoringMetrics, window: LiveWindow | None) -> None:
        self.models = models
        self.metrics = metrics
        self.window = window
        self.agreements: dict[tuple[int, int], Agreement] = {}
        self.dropped = 0
        self._queue: queue.Queue[tuple[Scorer, pd.DataFrame, pd.DataFrame, list[str] | None] | None] = queue.Queue(
            QUEUE_BATCHES
        )
        self._thread = threading.Thread(target=self._run, name="http-shadow", daemon=True)
        self._thread.start()

    def offer(self, champion: Scorer, features: pd.DataFrame, scored: pd.DataFrame, ids: list[str] | None) -> None:
        """Queue a scored batch for the challenger (never blocks: a full queue drops it, counted)."""
        try:
            self._queue.put_nowait((champion, features, scored, ids))
        except queue.Full:
            self.dropped += 1
            self.metrics.shadow_errors.labels("dropped").inc(len(scored))

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for what is queued (a clean stop, or a test), then stop the thread."""
        self._queue.put(None, timeout=timeout)
        self._thread.join(timeout=timeout)
        if self.window is not None:
            self.window.close()
        self.models.stop()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._score(*item)
            except Exception:  # noqa: BLE001 - the shadow must outlive any surprise; the champion is unaffected
                self.metrics.shadow_errors.labels("score").inc()
                log.exception("shadow: a batch failed")

    def _score(self, champion: Scorer, features: pd.DataFrame, scored: pd.DataFrame, ids: list[str] | None) -> None:
        challenger = self.models.current()
        if challenger is None or challenger.version == champion.version:
            return
        shadow = challenger.score(features)
        refused = shadow[REJECT_REASON].notna().to_numpy()
        if refused.any():
            self.metrics.shadow_errors.labels("validate").inc(int(refused.sum()))
        both = ~refused & scored[REJECT_REASON].isna().to_numpy()  # rows the champion answered, and the challenger took
        key = (champion.version, challenger.version)
        total = self.agreements.setdefault(key, Agreement(*key))
        batch = Agreement(*key)
        diff = batch.add(scored, shadow, champion.bundle.classes)
        total.merge(batch)
        self.metrics.record_agreement(batch, diff, total)
        if self.window is not None and both.any():
            mirrored = shadow[both]
            columns: dict[str, Any] = {}
            if ids is not None:  # the champion's prediction ids, row for row with ``scored`` ("" where none)
                columns[EVENT_ID] = np.asarray(ids, dtype=object)[both]
            columns.update({c: mirrored[c] for c in mirrored.columns if c != REJECT_REASON})
            self.window.append(columns)
