"""The live window: what the stream and the server score, appended to rolling Parquet files.

Drift and performance reports and the canary gate read it; each row keeps its event (or prediction)
id, features, scores and model version.

Rows are buffered and written as one file per roll (by row count or age), atomically, under
``ROOT/date=YYYY-MM-DD/``. A consumer killed with SIGKILL loses at most its open buffer from the
window (never a prediction): the window is a sample for drift, not a ledger.

A scorer appends a micro-batch's columns after every batch, so appending must cost next to
nothing and rolling a file must not stall the scoring loop: a batch's columns are kept as arrays
(no frame per batch), and each roll is joined per column and written by one background thread.
A server scoring lone records appends rows (``append_rows``): they are kept as they come, and made
into columns by the writer thread, since a column per request would cost more than the scoring.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger("scorepipe.stream")


class LiveWindow:
    """Rolling Parquet files of scored features and predictions."""

    def __init__(self, root: Path, *, roll_rows: int, roll_seconds: float, name: str | None = None):
        self.root = root
        self.roll_rows = roll_rows
        self.roll_seconds = roll_seconds
        self.name = name or f"live-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._columns: dict[str, list[np.ndarray]] = {}
        self._time_zones: dict[str, Any] = {}
        self._pending: list[Mapping[str, Any]] = []  # rows appended one by one since the last columns
        self._names: tuple[str, ...] = ()  # the columns of what is buffered
        self._rows = 0
        self._opened = time.monotonic()
        self._sequence = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-window")
        self._writes: list[Future[Path]] = []
        self._lock = threading.Lock()
        self.files_written: list[Path] = []

    def append(self, columns: Mapping[str, Any] | pd.DataFrame) -> None:
        """Buffer one batch: a frame, or a mapping of column name to array or Series (same length)."""
        names = [str(name) for name in columns]
        rows = len(columns[names[0]]) if names else 0
        if rows == 0:
            return
        self._start(names)
        if self._pending:
            self._columns_of_pending()  # rows before these columns keep their place
        for name in names:
            self._columns.setdefault(name, []).append(self._plain(name, columns[name]))
        self._added(rows)

    def append_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Buffer scored rows, each a mapping of column name to value (the same names in every row)."""
        if not rows:
            return
        self._start([str(name) for name in rows[0]])
        self._pending.extend(rows)
        self._added(len(rows))

    def _start(self, names: list[str]) -> None:
        if self._rows and set(names) != set(self._names):
            self.roll()  # another model's columns (a reload with other classes): a file of their own
        if not self._rows:
            self._opened = time.monotonic()
            self._names = tuple(names)

    def _added(self, rows: int) -> None:
        self._rows += rows
        if self._rows >= self.roll_rows:
            self.roll()
        else:
            self.roll_if_due()

    def _columns_of_pending(self) -> None:
        _add_rows(self._columns, self._time_zones, self._pending, self._names)
        self._pending = []

    def roll(self) -> Path | None:
        """Hand what is buffered to the writer as one file; return its path (None if nothing was buffered)."""
        if not self._rows:
            return None
        parts, pending, names, time_zones = self._columns, self._pending, self._names, dict(self._time_zones)
        self._columns, self._pending, self._rows = {}, [], 0
        now = datetime.now(UTC)
        path = self.root / f"date={now.date().isoformat()}" / f"{self.name}-{now:%H%M%S}-{self._sequence:05d}.parquet"
        self._sequence += 1
        for write in [w for w in self._writes if w.done()]:
            if write.exception() is not None:  # a sample for drift, not a ledger: say so, keep scoring
                log.warning("live window: a file could not be written: %s", write.exception())
        self._writes = [w for w in self._writes if not w.done()]
        self._writes.append(self._writer.submit(self._write, parts, pending, names, time_zones, path))
        return path

    def roll_if_due(self) -> Path | None:
        """Roll what is buffered if it is older than ``roll_seconds``: a quiet scorer's rows still reach the files.

        Appending rolls only when a batch arrives; the scorer calls this when it has nothing to score.
        """
        if self._rows and time.monotonic() - self._opened >= self.roll_seconds:
            return self.roll()
        return None

    def flush(self) -> Path | None:
        """Write what is buffered and wait until every file handed to the writer is on disk."""
        path = self.roll()
        for write in self._writes:
            write.result()
        self._writes = []
        return path

    def close(self) -> None:
        self.flush()
        self._writer.shutdown(wait=True)

    def _plain(self, name: str, values: Any) -> np.ndarray:
        array, tz = _plain(values)
        if tz is not None:
            self._time_zones[name] = tz
        return array

    def _write(
        self,
        parts: dict[str, list[np.ndarray]],
        pending: list[Mapping[str, Any]],
        names: tuple[str, ...],
        time_zones: dict[str, Any],
        path: Path,
    ) -> Path:
        _add_rows(parts, time_zones, pending, names)  # the rows after the last columns
        columns: dict[str, Any] = {name: np.concatenate(chunks) for name, chunks in parts.items()}
        for name, tz in time_zones.items():
            if name in columns:
                columns[name] = pd.Series(columns[name]).dt.tz_localize("UTC").dt.tz_convert(tz)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False), tmp)
        os.replace(tmp, path)
        with self._lock:
            self.files_written.append(path)
        return path


def _plain(values: Any) -> tuple[np.ndarray, Any]:
    """A column as a numpy array, and its time zone: zoned times become UTC datetime64 (no object per value)."""
    if isinstance(getattr(values, "dtype", None), pd.DatetimeTZDtype):
        return values.to_numpy(dtype="datetime64[ns]"), values.dtype.tz
    return np.asarray(values), None


def _add_rows(
    parts: dict[str, list[np.ndarray]],
    time_zones: dict[str, Any],
    rows: list[Mapping[str, Any]],
    names: tuple[str, ...],
) -> None:
    """Append ``rows`` to ``parts`` as one array per column, each typed as a frame of them would type it."""
    if not rows:
        return
    for name in names:
        array, tz = _plain(pd.Series([row[name] for row in rows]))
        parts.setdefault(name, []).append(array)
        if tz is not None:
            time_zones[name] = tz
