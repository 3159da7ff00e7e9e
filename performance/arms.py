"""Two arms of a split on their own labelled rows: ROC AUC of each, the difference and its bootstrap interval.

Unlike a shadow challenger (``performance.challenger``), a canary and its champion score different
keys, so their rows are independent samples: each arm is resampled on its own (with replacement, a
fixed seed, at most ``max_rows`` rows each) and the difference in ROC AUC gets a 95% percentile
interval. The canary is significantly worse when the whole interval lies below zero. Binary models only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score


def arm_auc_difference(
    champion: tuple[np.ndarray, np.ndarray],
    canary: tuple[np.ndarray, np.ndarray],
    *,
    resamples: int = 200,
    max_rows: int = 20_000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Each arm given as (is positive, positive-class probability); None if either arm has only one class."""
    rng = np.random.default_rng(seed)
    arms = []
    for y, p in (champion, canary):
        y, p = np.asarray(y, dtype=bool), np.asarray(p, dtype=float)
        if len(y) < 2 or y.all() or not y.any():
            return None
        if len(y) > max_rows:
            keep = rng.choice(len(y), max_rows, replace=False)
            y, p = y[keep], p[keep]
        arms.append((y, p))
    (y_a, p_a), (y_b, p_b) = arms
    auc_a, auc_b = float(roc_auc_score(y_a, p_a)), float(roc_auc_score(y_b, p_b))
    differences = []
    for _ in range(resamples):
        i, j = rng.integers(0, len(y_a), len(y_a)), rng.integers(0, len(y_b), len(y_b))
        if y_a[i].all() or not y_a[i].any() or y_b[j].all() or not y_b[j].any():
            continue
        differences.append(roc_auc_score(y_b[j], p_b[j]) - roc_auc_score(y_a[i], p_a[i]))
    if len(differences) < resamples // 2:  # too few resamples with both classes in both arms: no interval
        return None
    low, high = (float(v) for v in np.percentile(differences, [2.5, 97.5]))
    return {
        "champion_roc_auc": auc_a,
        "canary_roc_auc": auc_b,
        "champion_rows": len(y_a),
        "canary_rows": len(y_b),
        "difference": auc_b - auc_a,
        "ci95_low": low,
        "ci95_high": high,
        "significantly_worse": high < 0,
        "significantly_better": low > 0,
    }
