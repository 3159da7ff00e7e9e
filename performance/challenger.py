"""Champion against challenger on outcomes: the same labelled rows, ROC AUC of each, and a bootstrap.

A shadow challenger scored the same rows as the champion (``_shadow/`` outputs). Once labels arrive,
both are judged on exactly the rows labelled for both. The difference in ROC AUC gets a 95% bootstrap
interval (rows resampled with replacement; at most ``max_rows`` rows, sampled once with a fixed seed,
to bound the time); the difference is significant when the interval excludes zero. Binary models only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from performance.labels import LABEL
from scoring.scorer import MODEL_VERSION, PROBA_PREFIX


def compare_on_outcomes(
    champion: pd.DataFrame,
    challenger: pd.DataFrame,
    *,
    id_column: str,
    classes: list[Any],
    resamples: int = 200,
    max_rows: int = 50_000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """ROC AUC of both on the rows labelled for both, the difference and its 95% interval (None: not comparable)."""
    names = [str(c) for c in classes]
    if len(names) != 2:
        return None
    column = f"{PROBA_PREFIX}{names[-1]}"
    both = champion[[id_column, LABEL, column, MODEL_VERSION]].merge(
        challenger[[id_column, column, MODEL_VERSION]], on=id_column, suffixes=("_champion", "_challenger")
    )
    y = (both[LABEL].astype(str) == names[-1]).to_numpy()
    if len(both) < 2 or y.all() or not y.any():
        return None
    rng = np.random.default_rng(seed)
    if len(both) > max_rows:
        keep = rng.choice(len(both), max_rows, replace=False)
        sample_y, a, b = (
            y[keep],
            both[f"{column}_champion"].to_numpy()[keep],
            both[f"{column}_challenger"].to_numpy()[keep],
        )
    else:
        sample_y, a, b = y, both[f"{column}_champion"].to_numpy(), both[f"{column}_challenger"].to_numpy()
    auc_a = float(roc_auc_score(y, both[f"{column}_champion"]))
    auc_b = float(roc_auc_score(y, both[f"{column}_challenger"]))
    differences = []
    for _ in range(resamples):
        idx = rng.integers(0, len(sample_y), len(sample_y))
        if sample_y[idx].all() or not sample_y[idx].any():
            continue
        differences.append(roc_auc_score(sample_y[idx], b[idx]) - roc_auc_score(sample_y[idx], a[idx]))
    low, high = (float(v) for v in np.percentile(differences, [2.5, 97.5]))
    significant = low > 0 or high < 0
    difference = auc_b - auc_a
    return {
        "champion_version": int(both[f"{MODEL_VERSION}_champion"].mode().iloc[0]),
        "challenger_version": int(both[f"{MODEL_VERSION}_challenger"].mode().iloc[0]),
        "rows": len(both),
        "champion_roc_auc": auc_a,
        "challenger_roc_auc": auc_b,
        "difference": difference,
        "ci95_low": low,
        "ci95_high": high,
        "significant": significant,
        "better": ("challenger" if difference > 0 else "champion") if significant else "no significant difference",
        "resamples": len(differences),
    }
