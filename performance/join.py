"""Joining labels to scored rows by id, file by file and batch by batch (pyarrow's hash join).

Only the labels are held whole (a million labels is tens of MB); scored outputs and live windows are
read in record batches of the columns needed, so millions of scored rows never sit in memory at once.
The same id scored twice (the stream delivers at least once) counts once, its latest score kept.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from performance.labels import LabelSet
from scoring import SourceError
from scoring.layout import EVENT_ID
from scoring.scorer import MODEL_VERSION, PREDICTION, PROBA_PREFIX, SCORED_AT
from scoring.sources import discover_inputs
from scoring.storage import Where

ID_CANDIDATES = (EVENT_ID, "transaction_id")  # the stream's id, then the demo data's
NIGHT_COLUMN = "_night"  # the date= partition a joined row was scored in (files not partitioned: absent)
PARTITION_NIGHT = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
BATCH_ROWS = 200_000


@dataclass
class Joined:
    """Scored rows that have a label, and the counts that say how complete the join was."""

    rows: pd.DataFrame
    id_column: str
    scored_rows: int
    unknown_label_ids: int
    unknown_examples: list[str]
    scored_repeats_dropped: int
    proba: np.ndarray | None = None  # every scored row's ``collect_proba`` column, labelled or not
    scored_by_night: Counter[str] = field(default_factory=Counter)  # scored rows per date= partition
    proba_nights: np.ndarray | None = None  # the night of each ``proba`` value


def id_column_of(scored: Where) -> str:
    """The id a scored output carries: ``event_id`` (stream) or ``transaction_id`` (batch)."""
    first = discover_inputs(scored).files[0]
    names = pq.read_schema(first.path, filesystem=first.fs).names
    for candidate in ID_CANDIDATES:
        if candidate in names:
            return candidate
    raise SourceError(f"{first} has none of {', '.join(ID_CANDIDATES)}: name the id with --id-column")


def join_labels(
    scored: Where,
    labels: LabelSet,
    *,
    id_column: str | None = None,
    since: datetime | None = None,
    collect_proba: str | None = None,
) -> Joined:
    """Every labelled scored row under ``scored`` (optionally only those scored ``since``)."""
    files = discover_inputs(scored).files
    id_column = id_column or id_column_of(scored)
    right = pa.Table.from_pandas(labels.labels.rename(columns={"id": id_column}), preserve_index=False)
    parts: list[pa.Table] = []
    collected: list[np.ndarray] = []
    scored_rows = 0
    by_night: Counter[str] = Counter()
    nights: list[np.ndarray] = []
    for file in files:
        found = PARTITION_NIGHT.findall(str(file.path))
        night = found[-1] if found else None
        schema = pq.read_schema(file.path, filesystem=file.fs)
        wanted = [
            c
            for c in schema.names
            if c in (id_column, PREDICTION, MODEL_VERSION, SCORED_AT) or c.startswith(PROBA_PREFIX)
        ]
        if id_column not in wanted:
            raise SourceError(f"{file} has no {id_column} column to join labels on")
        for batch in pq.ParquetFile(file.path, filesystem=file.fs).iter_batches(batch_size=BATCH_ROWS, columns=wanted):
            table = pa.Table.from_batches([batch])
            if since is not None and SCORED_AT in table.column_names:
                table = table.filter(pc.greater_equal(table[SCORED_AT], pa.scalar(since, table[SCORED_AT].type)))
            scored_rows += table.num_rows
            if collect_proba is not None and collect_proba in table.column_names:
                collected.append(table[collect_proba].to_numpy(zero_copy_only=False))
                nights.append(np.full(table.num_rows, night or "", dtype=object))
            table = table.set_column(
                table.schema.get_field_index(id_column), id_column, pc.cast(table[id_column], pa.string())
            )
            if night is not None:
                by_night[night] += table.num_rows
                table = table.append_column(NIGHT_COLUMN, pa.array([night] * table.num_rows, pa.string()))
            if table.num_rows:
                parts.append(table.join(right, keys=id_column, join_type="inner"))
    joined = pa.concat_tables(parts, promote_options="default").to_pandas() if parts else pd.DataFrame()
    repeats = 0
    if not joined.empty:
        before = len(joined)
        if SCORED_AT in joined.columns:
            joined = joined.sort_values(SCORED_AT, kind="stable")
        joined = joined.drop_duplicates(id_column, keep="last").reset_index(drop=True)
        repeats = before - len(joined)
    matched = set(joined[id_column]) if not joined.empty else set()
    unknown = labels.labels["id"][~labels.labels["id"].isin(matched)]
    proba = np.concatenate(collected) if collected else None
    proba_nights = np.concatenate(nights) if nights else None
    return Joined(
        joined, id_column, scored_rows, len(unknown), unknown.head(5).tolist(), repeats, proba, by_night, proba_nights
    )
