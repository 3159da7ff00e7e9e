"""Training and evaluation: fit the default pipeline, or wrap a user's fitted estimator, as a bundle."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from scoring.bundle import ModelBundle
from scoring.errors import ModelLoadError, QualityGateError, SchemaError
from scoring.schema import FeatureSchema, learn_schema
from scoring.validation import validate

MAX_CATEGORIES = 255  # HistGradientBoostingClassifier's limit on a categorical feature's cardinality


def default_pipeline(schema: FeatureSchema, *, seed: int = 42) -> Pipeline:
    """Median-impute numerics, ordinal-encode categories, then gradient-boosted trees."""
    numeric = [f.name for f in schema.numeric]
    categorical = [f.name for f in schema.categorical]
    preprocess = ColumnTransformer(
        [
            ("numeric", SimpleImputer(strategy="median"), numeric),
            (
                "categorical",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1),
                categorical,
            ),
        ]
    )
    model = HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.08,
        max_leaf_nodes=31,
        categorical_features=[False] * len(numeric) + [True] * len(categorical),
        early_stopping=False,
        random_state=seed,
    )
    return Pipeline([("preprocess", preprocess), ("model", model)])


def evaluate(estimator: Any, features: pd.DataFrame, target: pd.Series) -> dict[str, float]:
    """Holdout metrics: ROC AUC (one-vs-rest macro for multi-class), accuracy, log loss."""
    classes = list(estimator.classes_)
    proba = estimator.predict_proba(features)
    predicted = np.asarray(classes)[np.argmax(proba, axis=1)]
    if len(classes) == 2:
        auc = roc_auc_score(target, proba[:, 1])
    else:
        auc = roc_auc_score(target, proba, multi_class="ovr", average="macro", labels=classes)
    return {
        "roc_auc": round(float(auc), 6),
        "accuracy": round(float(accuracy_score(target, predicted)), 6),
        "log_loss": round(float(log_loss(target, proba, labels=classes)), 6),
        "n_eval": int(len(target)),
    }


def train_bundle(
    frame: pd.DataFrame,
    target: str,
    *,
    features: list[str] | None = None,
    bounds: dict[str, tuple[float | None, float | None]] | None = None,
    reference_rows: int = 5_000,
    seed: int = 42,
    source: str = "",
) -> ModelBundle:
    """Fit the default pipeline on ``frame`` and return a bundle with holdout metrics."""
    if target not in frame.columns:
        raise SchemaError([f"target column {target!r} is missing"], where="training data")
    names = features if features is not None else [c for c in frame.columns if c != target]
    schema = learn_schema(frame, names)
    if bounds:
        schema = schema.with_bounds(bounds)
    too_many = [
        f"{f.name}: {len(f.categories):,} distinct values; the default pipeline takes at most {MAX_CATEGORIES} "
        "per categorical column (an id column? leave it out of the features)"
        for f in schema.features
        if f.kind == "categorical" and len(f.categories) > MAX_CATEGORIES
    ]
    if too_many:
        raise SchemaError(too_many, where="training data")
    y = frame[target]
    stratify = y if y.value_counts().min() >= 2 else None
    train, test = train_test_split(frame, test_size=0.2, random_state=seed, stratify=stratify)
    pipeline = default_pipeline(schema, seed=seed)
    pipeline.fit(validate(train, schema).features, train[target])
    metrics = evaluate(pipeline, validate(test, schema).features, test[target])
    metrics["n_train"] = int(len(train))
    # The drift reference comes from the holdout: the model's predictions on rows it was fitted on
    # are over-confident, and would make every live window look like prediction drift.
    return _bundle(pipeline, schema, test, target, metrics, reference_rows, seed, source, trainer="default_pipeline")


def bundle_from_estimator(
    estimator: Any,
    reference: pd.DataFrame,
    *,
    target: str | None = None,
    reference_rows: int = 5_000,
    seed: int = 42,
    source: str = "",
    schema: FeatureSchema | None = None,
) -> ModelBundle:
    """Wrap a user's fitted classifier: learn its schema from ``reference`` (unless given), evaluate if labelled."""
    if not hasattr(estimator, "predict_proba") or not hasattr(estimator, "classes_"):
        raise ModelLoadError(f"{type(estimator).__name__} is not a fitted classifier with predict_proba and classes_")
    if target is not None and target not in reference.columns:
        raise SchemaError([f"target column {target!r} is missing"], where="reference data")
    if hasattr(estimator, "feature_names_in_"):
        names = [str(n) for n in estimator.feature_names_in_]
    else:
        names = [c for c in reference.columns if c != target]
    schema = schema or learn_schema(reference, names)
    metrics: dict[str, float] = {}
    if target is not None:
        metrics = evaluate(estimator, validate(reference, schema).features, reference[target])
    return _bundle(estimator, schema, reference, target, metrics, reference_rows, seed, source, trainer="registered")


def check_quality_gate(metrics: dict[str, float], min_roc_auc: float) -> None:
    """Raise ``QualityGateError`` unless the holdout ROC AUC reaches ``min_roc_auc``."""
    auc = metrics.get("roc_auc")
    if auc is None:
        raise QualityGateError("no roc_auc metric: register with --target so the model can be evaluated")
    if auc < min_roc_auc:
        raise QualityGateError(f"roc_auc {auc:.4f} is below the quality gate {min_roc_auc:.4f}")


def _bundle(
    estimator: Any,
    schema: FeatureSchema,
    frame: pd.DataFrame,
    target: str | None,
    metrics: dict[str, float],
    reference_rows: int,
    seed: int,
    source: str,
    *,
    trainer: str,
) -> ModelBundle:
    columns = schema.names + ([target] if target else [])
    sample = frame.sample(n=min(reference_rows, len(frame)), random_state=seed) if len(frame) else frame
    info = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "trainer": trainer,
        "estimator": type(estimator).__name__,
        "target": target,
        "source": source,
        "sklearn_version": sklearn.__version__,
    }
    return ModelBundle(
        pipeline=estimator,
        schema=schema,
        classes=list(estimator.classes_),
        metrics=metrics,
        reference=sample[columns].reset_index(drop=True),
        info=info,
    )
