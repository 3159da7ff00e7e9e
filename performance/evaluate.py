"""A model version's quality on labelled rows: scikit-learn's figures and the verdict. Pure: no I/O.

``report`` joins labels, calls this per version, and writes the HTML, the JSON and the workspace runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from performance.labels import LABEL
from performance.summary import VersionPerformance
from scoring.layout import PREDICTION, PROBA_PREFIX


def measure(
    rows: pd.DataFrame,
    version: int,
    classes: list[Any],
    *,
    training_roc_auc: float | None,
    min_roc_auc: float,
    max_roc_auc_drop: float,
) -> VersionPerformance:
    """scikit-learn's figures for ``rows`` (labels joined to one version's predictions), and the verdict.

    Degraded when ROC AUC is below ``min_roc_auc`` (the quality gate) or more than ``max_roc_auc_drop``
    below ``training_roc_auc``; each reason is kept with the figures.
    """
    names = [str(c) for c in classes]
    codes = list(range(len(names)))
    y_true = class_codes(rows[LABEL], names)  # class indices: scikit-learn is much faster on ints than on strings
    y_pred = class_codes(rows[PREDICTION], names)
    proba = rows[[f"{PROBA_PREFIX}{c}" for c in names]].to_numpy(dtype=float)
    binary = len(names) == 2
    roc_auc = None
    if len(np.unique(y_true)) > 1:
        roc_auc = float(
            roc_auc_score(y_true == codes[-1], proba[:, -1])
            if binary
            else roc_auc_score(y_true, proba, multi_class="ovr", labels=codes)
        )
    average = "binary" if binary else "macro"
    pos = {"pos_label": codes[-1]} if binary else {}
    training = training_roc_auc
    drop = training - roc_auc if training is not None and roc_auc is not None else None
    reasons = []
    if roc_auc is not None and roc_auc < min_roc_auc:
        reasons.append(f"ROC AUC {roc_auc:.4f} is below the quality gate {min_roc_auc}")
    if drop is not None and drop > max_roc_auc_drop:
        reasons.append(
            f"ROC AUC {roc_auc:.4f} is {drop:.4f} below training's {training:.4f} (more than {max_roc_auc_drop})"
        )
    return VersionPerformance(
        model_version=version,
        rows=len(rows),
        roc_auc=roc_auc,
        precision=float(precision_score(y_true, y_pred, average=average, zero_division=0, **pos)),
        recall=float(recall_score(y_true, y_pred, average=average, zero_division=0, **pos)),
        f1=float(f1_score(y_true, y_pred, average=average, zero_division=0, **pos)),
        log_loss=float(log_loss(y_true, np.clip(proba, 1e-15, 1), labels=codes)),
        accuracy=float(accuracy_score(y_true, y_pred)),
        classes=names,
        confusion_matrix=confusion_matrix(y_true, y_pred, labels=codes).tolist(),
        training_roc_auc=training,
        roc_auc_drop=drop,
        degraded=bool(reasons),
        reasons=reasons,
    )


def class_codes(values: pd.Series, names: list[str]) -> np.ndarray:
    """Labels or predictions as class indices (the position of their text in ``names``)."""
    lookup = {name: i for i, name in enumerate(names)}
    text = values.map({v: str(v) for v in values.dropna().unique()})
    return text.map(lookup).to_numpy(dtype=np.int64)
