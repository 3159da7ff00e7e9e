"""Live drift: the last rows a long-running scorer scored, compared with the model's reference profile.

The scoring loop only hands over each batch's columns (copied: microseconds, and no view keeps a
request's whole frame alive), or a server's lone records as the scored rows themselves (made into
columns when measured); the window keeps the last ``rows`` rows scored within ``seconds``, and
``measure``, called off the scoring path, computes every feature's and output's drift with the same statistics
as the drift report (``scoring.drift_stats``). A new model version starts a new window against its
own reference: rows scored by two versions are never compared as one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scoring.drift_reference import drift_profile, output_columns, reference_outputs
from scoring.drift_stats import ColumnStat, DriftMethods, block_stats, column_stat
from scoring.profile import ReferenceProfile
from scoring.scorer import Scorer


@dataclass(frozen=True)
class LiveDriftFigures:
    """One measurement of the window: each feature's and output's statistic, on how many rows of which version."""

    version: int
    rows: int
    features: list[ColumnStat]
    outputs: list[ColumnStat]

    @property
    def drifted_share(self) -> float:
        return sum(s.drifted for s in self.features) / len(self.features) if self.features else 0.0

    @property
    def prediction_drift(self) -> bool:
        return any(s.drifted for s in self.outputs)


@dataclass
class _Batch:
    at: float
    version: int
    rows: int
    columns: dict[str, Any] | None = None
    records: list[Mapping[str, Any]] | None = None  # scored rows, gathered for up to ROWS_BATCH_SECONDS

    def snapshot(self) -> _Batch:
        return self if self.records is None else _Batch(self.at, self.version, self.rows, records=self.records[:])

    def names(self) -> list[str]:
        return list(self.columns) if self.columns is not None else list(self.records[0]) if self.records else []

    def column(self, name: str, *, text: bool) -> np.ndarray:
        if self.columns is not None:
            return self.columns[name]
        assert self.records is not None
        return np.array([r[name] for r in self.records], dtype=object if text else None)


ROWS_BATCH_SECONDS = 1.0  # rows observed one request at a time age out together, by the second


class LiveDrift:
    """A sliding window of scored rows and the drift of its columns against the scoring version's reference."""

    def __init__(
        self,
        methods: DriftMethods,
        *,
        rows: int,
        seconds: float,
        min_rows: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.methods = methods
        self.rows = rows
        self.seconds = seconds
        # Fewer rows give noisy figures (600 clean rows measured 0.09 against a 0.1 threshold): none is
        # published until the window holds this many, or all it can hold.
        self.min_rows = min(min_rows, rows)
        self._clock = clock
        self._batches: deque[_Batch] = deque()
        self._held = 0
        self._lock = threading.Lock()
        self._scorer: Scorer | None = None  # the version the window holds rows of
        self._references: dict[int, tuple[ReferenceProfile, list[str]]] = {}

    def observe(self, scorer: Scorer, columns: Mapping[str, Any] | pd.DataFrame) -> None:
        """Keep a scored batch's features and outputs (``columns``: name to array or Series, same length)."""
        names = [*scorer.bundle.schema.names, *output_columns(scorer.bundle.classes)]
        arrays = {name: _array(columns[name]) for name in names if name in columns}
        rows = len(next(iter(arrays.values()))) if arrays else 0
        if rows == 0:
            return
        # A copy of at most the window's rows: a view would keep a whole request's frame alive.
        kept = {name: np.array(values[-self.rows :], copy=True) for name, values in arrays.items()}
        rows = min(rows, self.rows)
        with self._lock:
            self._follow(scorer)
            self._batches.append(_Batch(self._clock(), scorer.version, rows, kept))
            self._held += rows
            self._trim()

    def observe_rows(self, scorer: Scorer, rows: Sequence[Mapping[str, Any]]) -> None:
        """Keep scored rows (what ``Scorer.score_one`` gives: features and outputs by name), as they are.

        Kept by reference, not copied: a scored row is built for its request and never changed after.
        """
        if not rows:
            return
        with self._lock:
            self._follow(scorer)
            now = self._clock()
            last = self._batches[-1] if self._batches else None
            if last is not None and last.records is not None and now - last.at < ROWS_BATCH_SECONDS:
                last.records.extend(rows)
                last.rows += len(rows)
            else:
                self._batches.append(_Batch(now, scorer.version, len(rows), records=list(rows)))
            self._held += len(rows)
            self._trim()

    def _follow(self, scorer: Scorer) -> None:
        if self._batches and self._batches[-1].version != scorer.version:
            self._batches.clear()  # a new version: a new window, against its own reference
            self._held = 0
        self._scorer = scorer

    def measure(self) -> LiveDriftFigures | None:
        """Every column's drift over the window, or None while it holds fewer than ``min_rows`` rows."""
        with self._lock:
            self._trim()
            batches = [b.snapshot() for b in self._batches]  # rows observed later do not change them
            scorer = self._scorer
        if scorer is None or not batches or sum(b.rows for b in batches) < self.min_rows:
            return None
        version = scorer.version
        profile, outputs = self._reference(scorer)
        numeric, categorical = profile.numeric_names, profile.categorical_names
        names = [name for name in batches[-1].names() if name in profile.columns]
        text = set(categorical)
        columns = {name: np.concatenate([b.column(name, text=name in text) for b in batches]) for name in names}
        rows = sum(b.rows for b in batches)
        present = [n for n in numeric if n in columns]
        stats: dict[str, ColumnStat] = {}
        if present:
            block = np.vstack([columns[n].astype(np.float64) for n in present])
            stats.update((s.column, s) for s in block_stats(present, block, profile, self.methods))
        for name in (n for n in categorical if n in columns):
            stats[name] = column_stat(name, columns[name], profile, self.methods)
        features = [stats[n] for n in [*numeric, *categorical] if n in stats and n not in outputs]
        return LiveDriftFigures(version, rows, features, [stats[n] for n in outputs if n in stats])

    def _reference(self, scorer: Scorer) -> tuple[ReferenceProfile, list[str]]:
        """The version's profile (features and outputs) and its output names, made once per version."""
        version = scorer.version
        if version not in self._references:
            bundle = scorer.bundle
            profile = drift_profile(bundle, reference_outputs(scorer))
            self._references = {version: (profile, output_columns(bundle.classes))}
        return self._references[version]

    def _trim(self) -> None:
        """Drop whole batches older than ``seconds`` or beyond the last ``rows`` rows."""
        oldest = self._clock() - self.seconds
        while self._batches and (self._batches[0].at < oldest or self._held - self._batches[0].rows >= self.rows):
            self._held -= self._batches.popleft().rows


def _array(values: Any) -> np.ndarray:
    """A column as a NumPy array; a pandas extension column (nullable labels) becomes objects with None."""
    if hasattr(values, "to_numpy"):
        if not isinstance(values.dtype, np.dtype):
            return values.to_numpy(dtype=object, na_value=None)
        return values.to_numpy()
    return np.asarray(values)
