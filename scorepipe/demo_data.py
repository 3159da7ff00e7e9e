"""Demo inputs: a training set, and a night of incoming partitions with some bad rows and a corrupt file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scoring import synthetic


def write_dataset(path: Path, rows: int, *, seed: int, drifted: bool = False, with_target: bool = True) -> Path:
    """Write ``rows`` synthetic transactions to one Parquet file, block by block (flat memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    writer = None
    try:
        for block in synthetic.iter_blocks(rows, seed=seed, drifted=drifted, with_target=with_target):
            table = pa.Table.from_pandas(block, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(path)
    return path


def write_incoming(
    folder: Path,
    *,
    files: int,
    rows_per_file: int,
    seed: int,
    drifted: bool = False,
    bad_rows: int = 0,
    corrupt_file: bool = False,
) -> list[Path]:
    """Write a partition of unlabelled transactions, ``bad_rows`` of them spoiled on purpose.

    Bad rows cover each row-level rule (negative amount, unknown category, missing value,
    infinity, out-of-range hour); the corrupt file is bytes that are not Parquet at all.
    """
    folder.mkdir(parents=True, exist_ok=True)
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
        frame.loc[row, column] = value
    paths = []
    for index in range(files):
        part = frame.iloc[index * rows_per_file : (index + 1) * rows_per_file]
        path = folder / f"part-{index:03d}.parquet"
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), path)
        paths.append(path)
    if corrupt_file:
        path = folder / f"part-{files:03d}.parquet"
        path.write_bytes(b"PAR1 this upload was cut off half way" + bytes(range(256)))
        paths.append(path)
    return paths


def write_labels(path: Path, rows: int, *, seed: int, drifted: bool = False, fraction: float = 1.0) -> Path:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pandas(labels, preserve_index=False), tmp)
    tmp.replace(path)
    return path
