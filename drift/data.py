"""Reference and current data for drift reports, bounded in memory whatever the window's size.

Reference: the training sample stored in the model bundle plus the model's own predictions on it,
cached per model version (keyed by the model's hash, so two registries never share an entry).
Current: scored batch outputs or live-window files, sampled with a fixed seed while reading.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scoring import ModelBundle, Scorer, SourceError
from scoring.bundle import MODEL_FILE
from scoring.registry import Registry
from scoring.scorer import MODEL_VERSION, PREDICTION, PROBA_PREFIX, SCORED_AT
from scoring.sources import discover_inputs


def scored_reference(registry: Registry, version: int, bundle: ModelBundle, cache_dir: Path) -> pd.DataFrame:
    """The bundle's reference features with the model's predictions on them, computed once per version."""
    digest = registry.info(version).files[MODEL_FILE][:12]
    path = cache_dir / f"reference-v{version}-{digest}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    scorer = Scorer(bundle, version)
    scored = scorer.score(bundle.reference[bundle.schema.names])
    scored = scored[scored["reject_reason"].isna()][[*bundle.schema.names, *scorer.proba_columns, PREDICTION]]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    scored.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return scored.reset_index(drop=True)


def sample_current(
    spec: str | Path, *, sample_rows: int, seed: int, since: datetime | None = None
) -> tuple[pd.DataFrame, int]:
    """Read a fixed-seed sample of about ``sample_rows`` scored rows; return it and the rows it stands for.

    Only the columns a report needs are read, batch by batch, so memory follows the sample size.
    ``since`` keeps rows scored at or after it (for time windows of the live feed).
    """
    inputs = discover_inputs(spec)
    files = [pq.ParquetFile(path.path, filesystem=path.fs) for path in inputs.files]
    total = sum(f.metadata.num_rows for f in files)
    if total == 0:
        raise SourceError(f"{spec} holds no scored rows")
    share = min(1.0, sample_rows / total)
    rng = np.random.default_rng(seed)
    kept: list[pa.Table] = []
    window_rows = 0
    for path, parquet in zip(inputs.files, files, strict=True):
        names = parquet.schema_arrow.names
        if PREDICTION not in names:
            raise SourceError(f"{path} is not scored output (no {PREDICTION!r} column)")
        for batch in parquet.iter_batches(batch_size=65_536):
            table = pa.Table.from_batches([batch])
            if since is not None and SCORED_AT in names:
                table = table.filter(pc.greater_equal(table[SCORED_AT], pa.scalar(since, table[SCORED_AT].type)))
            window_rows += table.num_rows
            if share < 1.0:
                table = table.filter(pa.array(rng.random(table.num_rows) < share))
            kept.append(table)
    if not kept or window_rows == 0:
        raise SourceError(f"{spec} holds no rows scored since {since}" if since else f"{spec} holds no rows")
    frame = pa.concat_tables(kept, promote_options="permissive").to_pandas()
    return frame.reset_index(drop=True), window_rows


def dominant_version(frame: pd.DataFrame) -> int | None:
    """The model version that scored most of ``frame``, if the column is there."""
    if MODEL_VERSION not in frame.columns or frame.empty:
        return None
    return int(Counter(frame[MODEL_VERSION].tolist()).most_common(1)[0][0])


def prediction_columns(scorer_classes: list, columns: list[str]) -> list[str]:
    """Columns describing the model's output: the positive-class probability (all for multi-class)."""
    proba = [f"{PROBA_PREFIX}{c}" for c in scorer_classes]
    chosen = proba[1:] if len(proba) == 2 else proba
    return [c for c in chosen if c in columns]
