"""Demo inputs: a training set, a night of incoming partitions with bad rows and a corrupt file, labels.

Every path may be local or ``s3://bucket/prefix``; each file appears whole or not at all.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scoring import synthetic
from scoring.storage import Location, Where, as_location


def write_dataset(path: Where, rows: int, *, seed: int, drifted: bool = False, with_target: bool = True) -> Location:
    """Write ``rows`` synthetic transactions to one Parquet file, block by block (flat memory)."""
    path = as_location(path)
    path.parent.mkdir()
    tmp = path.temporary_sibling()
    writer = None
    try:
        for block in synthetic.iter_blocks(rows, seed=seed, drifted=drifted, with_target=with_target):
            table = pa.Table.from_pandas(block, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp.path, table.schema, filesystem=tmp.fs)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    tmp.move_to(path)
    return path


def write_table(table: pa.Table, path: Location) -> Location:
    """One Parquet file written to a temporary twin and moved into place (local or S3)."""
    path.parent.mkdir()
    tmp = path.temporary_sibling()
    pq.write_table(table, tmp.path, filesystem=tmp.fs)
    tmp.move_to(path)
    return path


def write_incoming(
    folder: Where,
    *,
    files: int,
    rows_per_file: int,
    seed: int,
    drifted: bool = False,
    bad_rows: int = 0,
    corrupt_file: bool = False,
) -> list[Location]:
    """Write a partition of unlabelled transactions, ``bad_rows`` of them spoiled on purpose.

    Bad rows cover each row-level rule (negative amount, unknown category, missing value,
    infinity, out-of-range hour); the corrupt file is bytes that are not Parquet at all.
    """
    folder = as_location(folder)
    frame = synthetic.generate(files * rows_per_file, seed=seed, drifted=drifted, with_target=False)
    rng = np.random.default_rng(seed)
    spoilers = [
        ("amount", -12.5),
        ("merchant_category", "crypto_exchange"),
        ("channel", None),
        ("distance_from_home_km", np.inf),
        ("hour_of_day", 27.0),
    ]
    for i, row in enumerate(rng.choice(len(frame), size=min(bad_rows, len(frame)), replace=False)):
        column, value = spoilers[i % len(spoilers)]
        frame.loc[row, column] = value  # type: ignore[call-overload]  # pandas types a cell as a narrower scalar
    paths = []
    for index in range(files):
        part = frame.iloc[index * rows_per_file : (index + 1) * rows_per_file]
        paths.append(
            write_table(pa.Table.from_pandas(part, preserve_index=False), folder / f"part-{index:03d}.parquet")
        )
    if corrupt_file:
        path = folder / f"part-{files:03d}.parquet"
        path.parent.mkdir()
        path.write_bytes(b"PAR1 this upload was cut off half way" + bytes(range(256)))
        paths.append(path)
    return paths


def write_labels(path: Where, rows: int, *, seed: int, drifted: bool = False, fraction: float = 1.0) -> Location:
    """The true labels of the first ``rows`` generated transactions, as delayed labels arrive.

    ``fraction`` of them, chosen with a fixed seed, each with a ``label_time`` some days after now.
    """
    frame = synthetic.generate(rows, seed=seed, drifted=drifted, with_target=True)
    rng = np.random.default_rng([seed, 99])
    keep = rng.random(len(frame)) < fraction
    delay_days = rng.uniform(1, 30, len(frame))
    now = pd.Timestamp.now(tz="UTC")
    labels = pd.DataFrame(
        {
            synthetic.ID_COLUMN: frame[synthetic.ID_COLUMN],
            "label": frame[synthetic.TARGET],
            "label_time": now + pd.to_timedelta(delay_days, unit="D"),
        }
    )[keep]
    return write_table(pa.Table.from_pandas(labels, preserve_index=False), as_location(path))
