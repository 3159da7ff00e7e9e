"""Validation of an input frame against a feature schema.

Two levels, because they call for different actions:
- frame-level problems (a missing column, a column that cannot be cast at all) make the whole
  frame unscorable: ``SchemaError`` lists every one of them at once;
- row-level problems (a missing value, inf, an unknown category, a value out of bounds) reject
  just that row, with a reason naming the column, the value and the rule; other rows go through.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from scoring.errors import SchemaError
from scoring.schema import FeatureSchema, FeatureSpec

ExtraColumns = Literal["allow", "reject"]
_MAX_LISTED_CATEGORIES = 8


@dataclass(frozen=True)
class ValidatedFrame:
    """Features cast to the schema's types, plus the reason each rejected row was rejected.

    ``features`` and ``reasons`` share the input's index; ``reasons`` is None where a row is valid.
    """

    features: pd.DataFrame
    reasons: pd.Series

    @property
    def valid(self) -> np.ndarray:
        return self.reasons.isna().to_numpy()

    @property
    def n_rejected(self) -> int:
        return int((~self.valid).sum())


def validate(frame: pd.DataFrame, schema: FeatureSchema, *, extra: ExtraColumns = "allow") -> ValidatedFrame:
    """Cast and check ``frame`` against ``schema``; never mutates ``frame``.

    Raises ``SchemaError`` listing every frame-level problem. Extra columns are carried by the
    caller when ``extra="allow"`` and are a frame-level problem when ``extra="reject"``.
    """
    problems = [f"column {name!r} is missing" for name in schema.names if name not in frame.columns]
    if extra == "reject":
        problems += [
            f"column {name!r} is not a feature of this model" for name in frame.columns if name not in schema.names
        ]
    row_problems: dict[int, list[str]] = defaultdict(list)
    cast: dict[str, pd.Series] = {}
    for spec in schema.features:
        if spec.name not in frame.columns:
            continue
        column = frame[spec.name]
        if spec.kind == "numeric":
            result = _check_numeric(column, spec, row_problems)
        else:
            result = _check_categorical(column, spec, row_problems)
        if isinstance(result, str):
            problems.append(result)
        else:
            cast[spec.name] = result
    if problems:
        raise SchemaError(problems)
    reasons = np.full(len(frame), None, dtype=object)
    for position, messages in row_problems.items():
        reasons[position] = "; ".join(messages)
    # Built in schema order (every feature is present here), without copying the cast columns into one block.
    features = pd.DataFrame(cast, index=frame.index, copy=False)
    return ValidatedFrame(features=features, reasons=pd.Series(reasons, index=frame.index, name="reject_reason"))


def _flag(mask: np.ndarray, values: pd.Series, row_problems: dict[int, list[str]], message: str) -> None:
    """Record ``message`` (formatted with the offending value) for every row where ``mask`` holds."""
    for position in np.flatnonzero(mask):
        row_problems[int(position)].append(message.format(value=values.iloc[position]))


def _check_numeric(column: pd.Series, spec: FeatureSpec, row_problems: dict[int, list[str]]) -> pd.Series | str:
    name = spec.name
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "biuf":
        # Plain numpy bool/int/float: cast in numpy (pandas' dtype checks cost more than a small frame).
        array = column.to_numpy(dtype=np.float64)
        values = pd.Series(array, index=column.index, name=column.name)
        missing = np.isnan(array)
    elif pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        if pd.api.types.is_complex_dtype(column):
            return f"column {name!r} has type {column.dtype}, expected a real number"
        values = column.astype("float64")
        missing = np.isnan(values.to_numpy())  # after the cast, missing (None, NaN, NA) is exactly NaN
    elif pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column):
        present = column.notna().to_numpy()
        values = pd.to_numeric(column, errors="coerce").astype("float64")
        unparsed = present & values.isna().to_numpy()
        if unparsed.any() and unparsed.sum() == present.sum():
            first = int(np.flatnonzero(unparsed)[0])
            return (
                f"column {name!r} has type {column.dtype} and no value parses as a number "
                f"(row {column.index[first]!r}: {column.iloc[first]!r})"
            )
        _flag(unparsed, column, row_problems, f"{name}: {{value!r}} is not a number")
        missing = ~present
    else:
        return f"column {name!r} has type {column.dtype}, which cannot be cast to a number"
    array = values.to_numpy()
    if not spec.nullable:
        _flag(missing, column, row_problems, f"{name}: missing value")
    _flag(np.isinf(array), values, row_problems, f"{name}: {{value}} is not finite")
    with np.errstate(invalid="ignore"):
        if spec.min_value is not None:
            _flag(
                array < spec.min_value, values, row_problems, f"{name}: {{value}} is below the minimum {spec.min_value}"
            )
        if spec.max_value is not None:
            _flag(
                array > spec.max_value, values, row_problems, f"{name}: {{value}} is above the maximum {spec.max_value}"
            )
    return values


def _check_categorical(column: pd.Series, spec: FeatureSpec, row_problems: dict[int, list[str]]) -> pd.Series | str:
    name = spec.name
    textual = pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)
    if not (
        textual
        or isinstance(column.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(column)
        or pd.api.types.is_integer_dtype(column)
    ):
        return f"column {name!r} has type {column.dtype}, expected text categories"
    raw = column.to_numpy(dtype=object)
    missing = pd.isna(raw)
    if textual:
        # Built in numpy: a pandas assignment per column costs more than the whole check on small frames.
        cleaned = raw.copy()
        cleaned[missing] = None
        values = pd.Series(cleaned, index=column.index, name=column.name, dtype=object)
    else:
        values = column.astype(object).map(str, na_action="ignore")
        values[missing] = None
    if not spec.nullable:
        _flag(missing, column, row_problems, f"{name}: missing value")
    if not spec.allow_unknown:
        unknown = ~missing & ~values.isin(spec.categories).to_numpy()
        if unknown.any():
            listed = ", ".join(spec.categories[:_MAX_LISTED_CATEGORIES])
            more = "" if len(spec.categories) <= _MAX_LISTED_CATEGORIES else f", ... ({len(spec.categories)} in all)"
            _flag(
                unknown, values, row_problems, f"{name}: unknown category {{value!r}} (expected one of {listed}{more})"
            )
    return values
