"""A reference profile: each column of the training reference reduced to what drift tests need.

Numeric columns keep their sorted finite values and categorical columns their category counts,
with the count of missing values beside them. That is all the information every drift test
scorepipe offers uses (Wasserstein, Kolmogorov-Smirnov and the binned tests need the whole
distribution, and the binned tests draw their bin edges from reference and current data together),
so statistics computed from a profile equal Evidently's on the same reference rows, and the
reference never needs to be re-read, re-sorted or re-counted for a report or a live window.

The profile is written into every registered version as ``profile.parquet`` (one row per column,
hash-checked like the rest of the bundle). It describes the bundle's reference rows, all of them:
the reference is already the fixed-seed sample registration keeps (``SCOREPIPE_REFERENCE_ROWS``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scoring.errors import ModelLoadError
from scoring.schema import FeatureSchema
from scoring.validation import validate


@dataclass(frozen=True)
class NumericProfile:
    """A numeric column: its finite values sorted ascending, and how many were missing or infinite."""

    values: np.ndarray
    missing: int

    @property
    def unique(self) -> int:
        """Distinct finite values (Evidently bins a numeric column only above 20 of them)."""
        return int(len(self.values) and 1 + np.count_nonzero(np.diff(self.values)))


@dataclass(frozen=True)
class CategoricalProfile:
    """A categorical column: its categories (as text) and their counts, and how many were missing."""

    counts: dict[str, int]
    missing: int


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class ReferenceProfile:
    """Every profiled column by name, and how many reference rows they describe."""

    columns: dict[str, ColumnProfile]
    rows: int

    @classmethod
    def build(
        cls,
        frame: pd.DataFrame,
        *,
        numeric: Iterable[str],
        categorical: Iterable[str],
    ) -> ReferenceProfile:
        """Profile ``frame``'s ``numeric`` and ``categorical`` columns."""
        columns: dict[str, ColumnProfile] = {}
        numeric = list(numeric)
        if numeric:
            block = frame[numeric].to_numpy(dtype=np.float64, copy=True)
            finite = np.isfinite(block)
            missing = len(block) - finite.sum(axis=0)
            block[~finite] = np.inf  # sorted past the finite values, then cut off
            block.sort(axis=0)
            for i, name in enumerate(numeric):
                kept = len(block) - int(missing[i])
                columns[name] = NumericProfile(np.ascontiguousarray(block[:kept, i]), int(missing[i]))
        for name in categorical:
            series = frame[name]
            present = series.dropna()
            counts = present.astype(str).value_counts(sort=False)
            columns[name] = CategoricalProfile({str(k): int(v) for k, v in counts.items()}, len(series) - len(present))
        return cls(columns, rows=len(frame))

    @classmethod
    def of_features(cls, reference: pd.DataFrame, schema: FeatureSchema) -> ReferenceProfile:
        """The profile of a bundle's reference features (``reference_features``), as registration stores it."""
        return cls.build(
            reference_features(reference, schema),
            numeric=[f.name for f in schema.numeric],
            categorical=[f.name for f in schema.categorical],
        )

    def with_columns(self, other: ReferenceProfile) -> ReferenceProfile:
        """A profile of these columns and ``other``'s (profiled on the same rows, such as the model's outputs)."""
        if other.rows != self.rows:
            raise ValueError(f"profiles of {self.rows} and {other.rows} rows describe different rows")
        return ReferenceProfile({**self.columns, **other.columns}, self.rows)

    @property
    def numeric_names(self) -> list[str]:
        return [name for name, column in self.columns.items() if isinstance(column, NumericProfile)]

    @property
    def categorical_names(self) -> list[str]:
        return [name for name, column in self.columns.items() if isinstance(column, CategoricalProfile)]

    def numeric(self, name: str) -> NumericProfile:
        column = self.columns[name]
        if not isinstance(column, NumericProfile):
            raise KeyError(f"{name!r} is profiled as categorical, not numeric")
        return column

    def categorical(self, name: str) -> CategoricalProfile:
        column = self.columns[name]
        if not isinstance(column, CategoricalProfile):
            raise KeyError(f"{name!r} is profiled as numeric, not categorical")
        return column

    # -- the file ------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """One Parquet row per column: name, kind, missing, sorted values or categories and counts."""
        names = list(self.columns)
        numeric = [self.columns[n] for n in names]
        table = pa.table(
            {
                "name": pa.array(names, pa.string()),
                "kind": pa.array(["numeric" if isinstance(c, NumericProfile) else "categorical" for c in numeric]),
                "missing": pa.array([c.missing for c in numeric], pa.int64()),
                "values": pa.array(
                    [c.values if isinstance(c, NumericProfile) else None for c in numeric], pa.list_(pa.float64())
                ),
                "categories": pa.array(
                    [list(c.counts) if isinstance(c, CategoricalProfile) else None for c in numeric],
                    pa.list_(pa.string()),
                ),
                "counts": pa.array(
                    [list(c.counts.values()) if isinstance(c, CategoricalProfile) else None for c in numeric],
                    pa.list_(pa.int64()),
                ),
            }
        ).replace_schema_metadata({"rows": str(self.rows)})
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        return sink.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "profile") -> ReferenceProfile:
        try:
            table = pq.read_table(io.BytesIO(data))
            meta = _metadata(table.schema.metadata)
            columns: dict[str, ColumnProfile] = {}
            values = table["values"]
            for i, row in enumerate(table.select(["name", "kind", "missing", "categories", "counts"]).to_pylist()):
                if row["kind"] == "numeric":
                    array = values[i].values.to_numpy(zero_copy_only=False)
                    columns[row["name"]] = NumericProfile(array, int(row["missing"]))
                else:
                    counts = dict(zip(row["categories"], row["counts"], strict=True))
                    columns[row["name"]] = CategoricalProfile(counts, int(row["missing"]))
            return cls(columns, int(meta["rows"]))
        except (pa.ArrowException, KeyError, ValueError, TypeError) as exc:
            raise ModelLoadError(f"cannot read the reference profile {where}: {exc}") from exc


def reference_features(reference: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """The reference rows drift compares with: those the model scores, as validation casts them.

    Categories become text and numbers float64 exactly as in scored output, so the reference and
    the current data are compared value for value; a row the model would reject is left out, as
    it is left out of scored output.
    """
    validated = validate(reference[schema.names], schema)
    return validated.features[validated.valid].reset_index(drop=True)


def _metadata(raw: Mapping[bytes, bytes] | None) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (raw or {}).items()}
