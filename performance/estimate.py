"""What the model's own probabilities say its performance is, before any label arrives.

This is confidence-based performance estimation (NannyML's CBPE) written out. ``nannyml`` 0.13.1
resolves beside our pins, but it brings about 40 more packages (xgboost, lightgbm, an NVIDIA NCCL
wheel, cloud-storage clients, a telemetry client) for a dozen lines of arithmetic: with calibrated
probabilities p, a row
predicted positive is a true positive with probability p, so the expected confusion matrix, precision,
recall and F1 follow by summing; expected ROC AUC integrates the expected true- and false-positive
rates over every threshold. It assumes the relation between features and label has not changed
(no concept drift): when the estimate stays high and the realized figure falls, the world changed in a
way the inputs alone do not show.
"""

from __future__ import annotations

import numpy as np


def estimated_metrics(proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Expected ROC AUC, precision, recall, F1 and accuracy from positive-class probabilities.

    >>> estimated_metrics(np.array([0.9, 0.8, 0.1, 0.2]))["accuracy"]
    0.85
    """
    p = np.clip(np.asarray(proba, dtype=float), 0.0, 1.0)
    predicted = p >= threshold
    tp = float(p[predicted].sum())
    fp = float((1 - p[predicted]).sum())
    fn = float(p[~predicted].sum())
    tn = float((1 - p[~predicted]).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "roc_auc": round(_expected_auc(p), 6),
        "precision": round(precision, 6),
        "recall": round(recall, 6),
        "f1": round(f1, 6),
        "accuracy": round((tp + tn) / len(p), 6) if len(p) else 0.0,
        "rows": len(p),
    }


def _expected_auc(p: np.ndarray) -> float:
    """Area under the expected ROC curve: each row is p positive and 1 - p negative."""
    order = np.argsort(-p, kind="stable")
    positive = p[order]
    negative = 1 - positive
    if positive.sum() == 0 or negative.sum() == 0:
        return float("nan")
    tpr = np.concatenate([[0.0], np.cumsum(positive) / positive.sum()])
    fpr = np.concatenate([[0.0], np.cumsum(negative) / negative.sum()])
    return float(np.trapezoid(tpr, fpr))
