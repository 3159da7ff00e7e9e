"""The current data of a drift report: a fixed-seed sample of scored rows, read a group of columns at a time.

Which rows are compared is decided once (the rows scored since ``since``, then a fixed-seed share
of them), before any feature is read. Every column is then read for exactly those rows: the few
Evidently renders as one frame, and the many scorepipe computes statistics for as blocks of
``group`` columns, so memory follows the sample times the group, not the window times its width.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scoring import SourceError
from scoring.scorer import PREDICTION, SCORED_AT
from scoring.sources import discover_inputs
from scoring.storage import Location


@dataclass(frozen=True)
class ScoredFile:
    path: Location
    parquet: pq.ParquetFile
    kept: np.ndarray  # row numbers compared, ascending

    @property
    def names(self) -> list[str]:
        return self.parquet.schema_arrow.names


@dataclass(frozen=True)
class CurrentSample:
    """The scored rows a report compares with the reference, and how many rows they stand for."""

    spec: str
    files: list[ScoredFile]
    window_rows: int  # rows in the window (scored since ``since``), sampled or not

    @classmethod
    def plan(
        cls, spec: str | os.PathLike[str] | Location, *, sample_rows: int, seed: int, since: datetime | None = None
    ) -> CurrentSample:
        """Choose about ``sample_rows`` rows of ``spec`` (a file, folder or glob of scored Parquet), fixed seed."""
        inputs = discover_inputs(spec)
        windows: list[tuple[Location, pq.ParquetFile, np.ndarray]] = []
        for path in inputs.files:
            parquet = pq.ParquetFile(path.path, filesystem=path.fs)
            names = parquet.schema_arrow.names
            if PREDICTION not in names:
                raise SourceError(f"{path} is not scored output (no {PREDICTION!r} column)")
            rows = parquet.metadata.num_rows
            if since is not None and SCORED_AT in names:
                scored_at = parquet.read(columns=[SCORED_AT])[SCORED_AT]
                recent = pc.greater_equal(scored_at, pa.scalar(since, scored_at.type))
                in_window = np.flatnonzero(recent.to_numpy(zero_copy_only=False))
            else:
                in_window = np.arange(rows)
            windows.append((path, parquet, in_window))
        window_rows = sum(len(rows) for *_, rows in windows)
        if window_rows == 0:
            raise SourceError(f"{spec} holds no rows scored since {since}" if since else f"{spec} holds no rows")
        share = min(1.0, sample_rows / window_rows)
        rng = np.random.default_rng(seed)
        files = [
            ScoredFile(path, parquet, rows if share >= 1.0 else rows[rng.random(len(rows)) < share])
            for path, parquet, rows in windows
        ]
        return cls(str(spec), files, window_rows)

    @property
    def rows(self) -> int:
        return sum(len(f.kept) for f in self.files)

    @property
    def columns(self) -> list[str]:
        """Every column name in any of the files, in first-seen order."""
        return list(dict.fromkeys(name for f in self.files for name in f.names))

    def read(self, columns: list[str]) -> pd.DataFrame:
        """The sampled rows of ``columns`` as one frame (a column a file lacks is null there)."""
        tables = [self._read(f, columns) for f in self.files]
        return pa.concat_tables(tables, promote_options="permissive").to_pandas().reset_index(drop=True)

    def numeric_blocks(self, columns: list[str], group: int) -> Iterator[tuple[list[str], np.ndarray]]:
        """``group`` columns at a time: their names and a float64 block with one row per column."""
        for start in range(0, len(columns), group):
            names = columns[start : start + group]
            block = np.empty((len(names), self.rows))
            offset = 0
            for f in self.files:
                table = self._read(f, names)
                for i, name in enumerate(names):
                    values = table[name].cast(pa.float64())
                    if values.null_count:
                        values = values.fill_null(np.nan)
                    block[i, offset : offset + table.num_rows] = values.to_numpy()
                offset += table.num_rows
            yield names, block

    def where(self, mask: np.ndarray) -> CurrentSample:
        """The rows of this sample where ``mask`` (one flag per row, in ``read`` order) is set."""
        files, offset = [], 0
        for f in self.files:
            files.append(ScoredFile(f.path, f.parquet, f.kept[mask[offset : offset + len(f.kept)]]))
            offset += len(f.kept)
        return CurrentSample(self.spec, files, int(np.count_nonzero(mask)))

    @staticmethod
    def _read(f: ScoredFile, columns: list[str]) -> pa.Table:
        """The kept rows of ``columns``, a row group at a time (memory: one row group, not the file)."""
        present = [c for c in columns if c in f.names]
        parts = []
        start = 0
        for group in range(f.parquet.metadata.num_row_groups):
            stop = start + f.parquet.metadata.row_group(group).num_rows
            lo, hi = np.searchsorted(f.kept, [start, stop])
            if hi > lo:
                table = f.parquet.read_row_group(group, columns=present)
                if hi - lo < table.num_rows:
                    table = table.take(pa.array(f.kept[lo:hi] - start))
                parts.append(table)
            start = stop
        schema = f.parquet.schema_arrow
        table = pa.concat_tables(parts) if parts else pa.table({c: pa.array([], schema.field(c).type) for c in present})
        for name in columns:
            if name not in present:  # null of no type: it joins another file's column of any type
                table = table.append_column(name, pa.nulls(table.num_rows, pa.null()))
        return table.select(columns)


def sample_current(
    spec: str | os.PathLike[str] | Location, *, sample_rows: int, seed: int, since: datetime | None = None
) -> tuple[pd.DataFrame, int]:
    """Every column of a fixed-seed sample of about ``sample_rows`` scored rows, and the rows it stands for."""
    sample = CurrentSample.plan(spec, sample_rows=sample_rows, seed=seed, since=since)
    return sample.read(sample.columns), sample.window_rows
