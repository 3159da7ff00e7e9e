"""The live window: scored stream events appended to rolling Parquet files for drift reports.

Rows are buffered and written as one file per roll (by row count or age), atomically, under
``ROOT/date=YYYY-MM-DD/``. A consumer killed with SIGKILL loses at most its open buffer from the
window (never a prediction): the window is a sample for drift, not a ledger.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SHADOW_DIR = "_shadow"  # a shadow challenger's window, beside the champion's; readers skip ``_*`` folders


class LiveWindow:
    """Rolling Parquet files of scored features and predictions."""

    def __init__(self, root: Path, *, roll_rows: int, roll_seconds: float, name: str | None = None):
        self.root = root
        self.roll_rows = roll_rows
        self.roll_seconds = roll_seconds
        self.name = name or f"live-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._frames: list[pd.DataFrame] = []
        self._rows = 0
        self._opened = time.monotonic()
        self._sequence = 0
        self.files_written: list[Path] = []

    def append(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        if not self._frames:
            self._opened = time.monotonic()
        self._frames.append(frame)
        self._rows += len(frame)
        if self._rows >= self.roll_rows or time.monotonic() - self._opened >= self.roll_seconds:
            self.flush()

    def flush(self) -> Path | None:
        """Write what is buffered as one file; return its path (None if nothing was buffered)."""
        if not self._frames:
            return None
        frame = pd.concat(self._frames, ignore_index=True)
        self._frames, self._rows = [], 0
        now = datetime.now(UTC)
        folder = self.root / f"date={now.date().isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}-{now.strftime('%H%M%S')}-{self._sequence:05d}.parquet"
        self._sequence += 1
        tmp = folder / f".{path.name}.tmp"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        os.replace(tmp, path)
        self.files_written.append(path)
        return path
