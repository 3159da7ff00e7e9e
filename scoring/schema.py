"""The feature schema: what a model was trained on, learned from data and stored in the bundle."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from scoring.errors import SchemaError

FeatureKind = Literal["numeric", "categorical"]


class FeatureSpec(BaseModel):
    """One input feature: its kind, whether it may be missing, and what values are valid."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: FeatureKind
    nullable: bool = False
    # Numeric features: the enforced bounds (None = unbounded) and the range seen in training.
    min_value: float | None = None
    max_value: float | None = None
    observed_min: float | None = None
    observed_max: float | None = None
    # Categorical features: the categories seen in training; unknown ones are rejected unless allowed.
    categories: tuple[str, ...] = ()
    allow_unknown: bool = False


class FeatureSchema(BaseModel):
    """The ordered features a model expects. Order matters only to the model, never to callers.

    >>> schema = FeatureSchema(features=[FeatureSpec(name="x", kind="numeric")])
    >>> schema.names
    ['x']
    """

    model_config = ConfigDict(frozen=True)

    features: list[FeatureSpec] = Field(min_length=1)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric(self) -> list[FeatureSpec]:
        return [f for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[FeatureSpec]:
        return [f for f in self.features if f.kind == "categorical"]

    def spec(self, name: str) -> FeatureSpec:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)

    def with_bounds(self, bounds: dict[str, tuple[float | None, float | None]]) -> FeatureSchema:
        """Return a copy whose numeric features enforce the given (min, max) bounds."""
        unknown = sorted(set(bounds) - set(self.names))
        if unknown:
            raise SchemaError([f"no such feature: {name!r}" for name in unknown], where="bounds")
        features = [
            f.model_copy(update={"min_value": bounds[f.name][0], "max_value": bounds[f.name][1]})
            if f.name in bounds
            else f
            for f in self.features
        ]
        return FeatureSchema(features=features)


def learn_schema(frame: pd.DataFrame, features: list[str] | None = None) -> FeatureSchema:
    """Learn a schema from training data.

    Numeric columns (including bool) become numeric features; everything else is categorical.
    A feature is nullable only if training data had missing values. A numeric feature that was
    never negative in training is bounded below by 0: negative counts or amounts are data errors,
    while values beyond the observed maximum are drift, which must reach the drift report rather
    than be rejected.
    """
    names = list(frame.columns) if features is None else list(features)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise SchemaError([f"column {n!r} is not in the training data" for n in missing], where="training data")
    specs = []
    for name in names:
        column = frame[name]
        nullable = bool(column.isna().any())
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            values = column.astype("float64")
            finite = values[np.isfinite(values)]
            lo = float(finite.min()) if len(finite) else None
            hi = float(finite.max()) if len(finite) else None
            specs.append(
                FeatureSpec(
                    name=name,
                    kind="numeric",
                    nullable=nullable,
                    min_value=0.0 if lo is not None and lo >= 0 else None,
                    observed_min=lo,
                    observed_max=hi,
                )
            )
        else:
            categories = tuple(sorted(str(v) for v in column.dropna().unique()))
            specs.append(FeatureSpec(name=name, kind="categorical", nullable=nullable, categories=categories))
    return FeatureSchema(features=specs)
