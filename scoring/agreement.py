"""How far a challenger agrees with the champion on the same rows (shadow scoring).

Both models score the same validated frame; rows either one rejected are not compared. The
difference is measured on the positive class's probability (the last class of a binary model;
for more classes, the largest difference over all classes). Totals and a fine fixed-bin histogram
of the differences are kept, so statistics merge across micro-batches, files and processes in
constant memory, and the p95 is exact to the bin width (0.001).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scoring.scorer import PREDICTION, PROBA_PREFIX, REJECT_REASON, Scorer

BINS = 1000  # differences live in [0, 1]; bin i holds [i/BINS, (i+1)/BINS)


def probability_difference(champion: pd.DataFrame, challenger: pd.DataFrame, classes: list[Any]) -> np.ndarray:
    """Per row, the absolute difference the comparison is about (see the module docstring)."""
    columns = [f"{PROBA_PREFIX}{c}" for c in classes]
    diff = np.abs(champion[columns].to_numpy(dtype=float) - challenger[columns].to_numpy(dtype=float))
    return diff[:, -1] if len(columns) == 2 else diff.max(axis=1)


@dataclass
class Agreement:
    """Agreement statistics of one champion/challenger pair, mergeable.

    >>> a = Agreement(champion_version=1, challenger_version=2)
    >>> a.add_differences(np.array([0.0, 0.5]), agreed=1)
    >>> (a.rows, a.label_agreement, a.mean_abs_diff)
    (2, 0.5, 0.25)
    """

    champion_version: int
    challenger_version: int
    rows: int = 0
    agreed: int = 0
    abs_diff_sum: float = 0.0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))

    def add(self, champion: pd.DataFrame, challenger: pd.DataFrame, classes: list[Any]) -> np.ndarray:
        """Compare two ``Scorer.score`` results of the same frame; return the compared rows' differences."""
        both = (champion[REJECT_REASON].isna() & challenger[REJECT_REASON].isna()).to_numpy()
        left, right = champion[both], challenger[both]
        diff = probability_difference(left, right, classes)
        agreed = int((left[PREDICTION].to_numpy(dtype=object) == right[PREDICTION].to_numpy(dtype=object)).sum())
        self.add_differences(diff, agreed=agreed)
        return diff

    def add_differences(self, diff: np.ndarray, *, agreed: int) -> None:
        self.rows += len(diff)
        self.agreed += agreed
        self.abs_diff_sum += float(diff.sum())
        bins = np.minimum((diff * BINS).astype(np.int64), BINS - 1)
        self.histogram += np.bincount(bins, minlength=BINS)

    def merge(self, other: Agreement) -> None:
        self.rows += other.rows
        self.agreed += other.agreed
        self.abs_diff_sum += other.abs_diff_sum
        self.histogram += other.histogram

    @property
    def label_agreement(self) -> float | None:
        return self.agreed / self.rows if self.rows else None

    @property
    def mean_abs_diff(self) -> float | None:
        return self.abs_diff_sum / self.rows if self.rows else None

    def quantile(self, q: float) -> float | None:
        """The upper edge of the bin holding the ``q`` quantile of the differences."""
        if not self.rows:
            return None
        rank = int(np.searchsorted(np.cumsum(self.histogram), q * self.rows, side="left"))
        return min(rank + 1, BINS) / BINS

    def summary(self) -> dict[str, Any]:
        """The figures an operator reads: counts, agreement rate, mean and p95 difference."""
        return {
            "champion_version": self.champion_version,
            "challenger_version": self.challenger_version,
            "rows_compared": self.rows,
            "label_agreement": self.label_agreement,
            "mean_abs_proba_diff": self.mean_abs_diff,
            "p95_abs_proba_diff": self.quantile(0.95),
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form that ``from_dict`` reads back (the histogram kept sparse)."""
        nonzero = np.flatnonzero(self.histogram)
        return {
            **self.summary(),
            "agreed": self.agreed,
            "abs_diff_sum": self.abs_diff_sum,
            "histogram": {int(i): int(self.histogram[i]) for i in nonzero},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Agreement:
        histogram = np.zeros(BINS, dtype=np.int64)
        for index, count in data.get("histogram", {}).items():
            histogram[int(index)] = count
        return cls(
            champion_version=int(data["champion_version"]),
            challenger_version=int(data["challenger_version"]),
            rows=int(data["rows_compared"]),
            agreed=int(data["agreed"]),
            abs_diff_sum=float(data["abs_diff_sum"]),
            histogram=histogram,
        )


def compare_batch(
    totals: dict[tuple[int, int], Agreement], champion: Scorer, challenger: Scorer, scored: Any, shadow: Any
) -> tuple[Agreement, np.ndarray, Agreement]:
    """One batch's agreement of two versions, added to their running total: (batch, differences, total)."""
    key = (champion.version, challenger.version)
    total = totals.setdefault(key, Agreement(*key))
    batch = Agreement(*key)
    diff = batch.add(scored, shadow, champion.bundle.classes)
    total.merge(batch)
    return batch, diff, total
