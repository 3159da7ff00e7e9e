"""The server's shadow challenger: scored on its own thread, off the request path.

As each batch is scored, what the champion scored is offered here, a queue put that the answer
never waits on; the bounded queue takes it (when the challenger falls behind, batches are dropped
and counted, never waited for), and one thread scores the challenger on the same rows, counts agreement per (champion,
challenger) pair in the metrics the stream's shadow uses, and appends its rows to the shadow's
live window (``_shadow/``) for drift and performance reports. Whatever the challenger raises is
counted and logged, never returned to a client.

The challenger runs in the server's process, so its scoring competes with the answers for the
interpreter: one call per request would cost each request a second model call's worth of time.
The thread therefore gathers what was offered over ``GATHER_S`` (or ``GATHER_ROWS`` rows) and
scores it as one frame: a model call costs about the same for one row as for a hundred.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import numpy as np
import pandas as pd

from monitoring.metrics import ScoringMetrics
from scoring import Scorer
from scoring.agreement import Agreement, compare_batch
from scoring.layout import EVENT_ID
from scoring.live_window import LiveWindow
from scoring.scorer import PREDICTION, REJECT_REASON
from scoring.watcher import ModelWatcher

log = logging.getLogger("scorepipe.serve")
QUEUE_BATCHES = 1024
GATHER_S = 0.5  # the longest the shadow waits to gather rows before scoring them
GATHER_ROWS = 2_000
IDLE_S = 1.0  # with nothing offered, how often the shadow checks whether its window rows are due


class HttpShadow:
    """A challenger scored off the request path on what the champion scored."""

    def __init__(self, models: ModelWatcher, metrics: ScoringMetrics, window: LiveWindow | None) -> None:
        self.models = models
        self.metrics = metrics
        self.window = window
        self.agreements: dict[tuple[int, int], Agreement] = {}
        self.dropped = 0
        self._queue: queue.Queue[Offered | None] = queue.Queue(QUEUE_BATCHES)
        self._thread = threading.Thread(target=self._run, name="http-shadow", daemon=True)
        self._thread.start()

    def offer(
        self,
        champion: Scorer,
        features: list[dict[str, Any]] | pd.DataFrame,
        scored: pd.DataFrame,
        ids: list[str] | None,
    ) -> None:
        """Queue a scored batch for the challenger (never blocks: a full queue drops it, counted).

        Only what the comparison needs is kept of the champion's scores (arrays, not the frame), and
        JSON records stay records: the thread builds one frame of everything it gathered.
        """
        kept = scored[[REJECT_REASON, PREDICTION, *champion.proba_columns]]
        try:
            self._queue.put_nowait((champion, features, kept, ids))
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
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=IDLE_S)
            except queue.Empty:
                if self.window is not None:
                    self.window.roll_if_due()  # a quiet server's shadow rows reach the files all the same
                continue
            if first is None:
                return
            gathered, rows = [first], len(first[2])
            deadline = time.monotonic() + GATHER_S
            while rows < GATHER_ROWS and (left := deadline - time.monotonic()) > 0:
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                gathered.append(item)
                rows += len(item[2])
            for champion, parts in _by_champion(gathered):
                try:
                    self._score(champion, *_joined(champion, parts))
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
        self.metrics.record_agreement(*compare_batch(self.agreements, champion, challenger, scored, shadow))
        if self.window is not None and both.any():
            mirrored = shadow[both]
            columns: dict[str, Any] = {}
            if ids is not None:  # the champion's prediction ids, row for row with ``scored`` ("" where none)
                columns[EVENT_ID] = np.asarray(ids, dtype=object)[both]
            columns.update({c: mirrored[c] for c in mirrored.columns if c != REJECT_REASON})
            self.window.append(columns)


Offered = tuple[Scorer, "list[dict[str, Any]] | pd.DataFrame", pd.DataFrame, "list[str] | None"]


def _by_champion(items: list[Offered]) -> list[tuple[Scorer, list[Offered]]]:
    """The gathered batches, grouped by the champion version that scored them (a reload may fall between)."""
    groups: dict[int, tuple[Scorer, list[Offered]]] = {}
    for item in items:
        groups.setdefault(item[0].version, (item[0], []))[1].append(item)
    return list(groups.values())


def _joined(champion: Scorer, parts: list[Offered]) -> tuple[pd.DataFrame, pd.DataFrame, list[str] | None]:
    """One frame of features, one of the champion's scores, and the ids, of several offered batches."""
    names = list(champion.bundle.schema.names)
    records = [p[1] for p in parts if isinstance(p[1], list)]
    if len(records) == len(parts):  # JSON records: one frame of all of them, built once
        features = pd.DataFrame.from_records([r for batch in records for r in batch], columns=names)
    else:
        features = pd.concat(
            [p[1] if isinstance(p[1], pd.DataFrame) else pd.DataFrame.from_records(p[1], columns=names) for p in parts],
            ignore_index=True,
        )
    scored = parts[0][2] if len(parts) == 1 else pd.concat([p[2] for p in parts], ignore_index=True)
    with_ids = all(p[3] is not None for p in parts)
    ids = [i for p in parts for i in (p[3] or [])] if with_ids else None
    return features, scored.reset_index(drop=True), ids
