"""Label files: the one format late labels are kept in, whoever writes them (the label sink, ``/feedback``).

Columns ``event_id``, ``label`` (text) and ``label_time``, one Parquet file per flush under
``ROOT/date=YYYY-MM-DD/``, written whole or not at all (a temporary twin moved into place), locally
or on S3. Performance reports and the canary gate read them with ``performance.labels.read_labels``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scoring.storage import Location


def label_file_path(root: Location, kind: str, now: datetime | None = None) -> Location:
    """Where the next file of ``kind`` (labels, feedback, rejected) goes: today's partition, a unique name."""
    now = now or datetime.now(UTC)
    return root / f"date={now.date().isoformat()}" / f"{kind}-{now:%H%M%S}-{uuid.uuid4().hex[:8]}.parquet"


def write_label_file(rows: list[dict[str, Any]], path: Location) -> Location:
    """Write ``rows`` as one Parquet file at ``path``, whole or not at all."""
    path.parent.mkdir()
    tmp = path.temporary_sibling()
    pq.write_table(pa.Table.from_pylist(rows), tmp.path, filesystem=tmp.fs)
    tmp.move_to(path)
    return path
