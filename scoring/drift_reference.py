"""The drift reference of a model version: its reference rows' profile, with the model's own outputs.

The features' profile is stored at registration; the outputs' (the positive-class probability, or
every class's, and the predicted label) come from scoring the same reference rows, so reports and
live windows compare a model's predictions with what it predicted on its training reference.
"""

from __future__ import annotations

import pandas as pd

from scoring.bundle import ModelBundle
from scoring.layout import PREDICTION, PROBA_PREFIX
from scoring.profile import ReferenceProfile, reference_features
from scoring.scorer import Scorer


def output_columns(classes: list, columns: list[str] | None = None) -> list[str]:
    """The outputs drift is measured on: the positive-class probability (every class's for multi-class), the label."""
    proba = [f"{PROBA_PREFIX}{c}" for c in classes]
    chosen = proba[1:] if len(proba) == 2 else proba
    return [c for c in chosen if columns is None or c in columns] + [PREDICTION]


def reference_outputs(scorer: Scorer) -> pd.DataFrame:
    """The model's outputs on its reference rows (``reference_features``), row for row."""
    bundle = scorer.bundle
    scored = scorer.score(reference_features(bundle.reference, bundle.schema))
    return scored[output_columns(bundle.classes)].reset_index(drop=True)


def drift_profile(bundle: ModelBundle, outputs: pd.DataFrame) -> ReferenceProfile:
    """The features' profile stored at registration (made now for older versions) with the outputs' profile."""
    features = bundle.profile or ReferenceProfile.of_features(bundle.reference, bundle.schema)
    names = list(outputs.columns)
    return features.with_columns(ReferenceProfile.build(outputs, numeric=names[:-1], categorical=names[-1:]))
