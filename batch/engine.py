"""Scoring one Parquet file: bounded chunks in, one output file (and its rejects) out, atomically.

One input file becomes one output file with the same relative path under the output folder,
plus, if any row was rejected, a rejects file under ``_rejected/``. Files are read in chunks with
``iter_batches`` and written through ``batch.sinks`` so that a result appears whole or not at all;
an input that cannot be decoded is quarantined and the run goes on with the others. An output is
skipped when it was written from the same input by the same model version.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from batch.results import FileResult
from batch.sinks import AtomicParquet, atomic_writer, quarantine
from scoring import SchemaError, Scorer, SinkError, SourceError
from scoring.agreement import Agreement
from scoring.layout import FLOW_RUN_ID, LINEAGE, REJECTED_DIR, SHADOW_DIR, SOURCE_FILE, SOURCE_ROW
from scoring.scorer import CONFIDENCE, MODEL_VERSION, PREDICTION, REJECT_REASON, SCORED_AT
from scoring.sources import InputSet
from scoring.storage import Location, as_location

METADATA_KEY = b"scorepipe"


def fingerprint(source: Location, model_version: int) -> dict:
    """What makes an output current: the exact input file (size, mtime) and the model version."""
    info = source.info()
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no such file: {source}")
    return {
        "source": source.uri if source.is_s3 else str(Path(source.path).resolve()),
        "size": info.size,
        "mtime_ns": info.mtime_ns,
        "model_version": model_version,
    }


def is_current(output: Location, expected: dict) -> bool:
    """True if ``output`` exists and was written from the same input by the same model version."""
    try:
        if not output.exists():
            return False
        metadata = pq.read_schema(output.path, filesystem=output.fs).metadata or {}
        recorded = json.loads(metadata.get(METADATA_KEY, b"{}"))
    except (pa.ArrowException, OSError, ValueError):
        return False
    return {k: recorded.get(k) for k in expected} == expected


def score_file(
    source: Location | Path | str,
    inputs: InputSet,
    output_root: Location | Path | str,
    scorer: Scorer,
    *,
    chunk_size: int,
    run_id: str,
    force: bool = False,
    shadow: Scorer | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> FileResult:
    """Score one Parquet file in chunks; write its results and rejects atomically.

    ``on_rows`` hears of every chunk scored (an interactive caller's progress bar).

    With a ``shadow`` challenger, every chunk is scored by it too and written under ``_shadow/``;
    a challenger that fails is recorded in ``shadow_error`` and its partial output discarded,
    while the champion's file is written exactly as without it.
    """
    started = time.perf_counter()
    source, output_root = as_location(source), as_location(output_root)
    relative = inputs.relative(source)
    output = output_root / relative
    rejects = output_root / REJECTED_DIR / relative
    shadow_path = output_root / SHADOW_DIR / relative
    try:
        expected = fingerprint(source, scorer.version)
        shadow_expected = fingerprint(source, shadow.version) if shadow is not None else None
    except (FileNotFoundError, PermissionError) as exc:
        raise SourceError(f"cannot read input {source}: {exc}") from exc
    shadow_current = shadow_expected is None or is_current(shadow_path, shadow_expected)
    if not force and is_current(output, expected) and shadow_current:
        return FileResult(str(source), "skipped", output=str(output), seconds=time.perf_counter() - started)
    result = FileResult(str(source), "scored", output=str(output))
    side: _Shadow | None = None
    try:
        parquet = pq.ParquetFile(source.path, filesystem=source.fs)
        out_schema = output_schema(parquet.schema_arrow, scorer, expected)
        side = _Shadow(shadow, shadow_path, parquet.schema_arrow, shadow_expected, scorer) if shadow else None
        with atomic_writer(output, out_schema) as write_scored, atomic_writer(rejects, None) as write_rejected:
            score_rows(
                parquet, scorer, result, schema=out_schema, chunk_size=chunk_size, source=source, run_id=run_id,
                write_scored=write_scored, write_rejected=write_rejected, side=side, on_rows=on_rows,
            )  # fmt: skip
            if not result.rejected and rejects.exists():
                rejects.unlink()  # a stale rejects file from an earlier run no longer applies
        if side is not None:
            side.finish(result)
    except (FileNotFoundError, PermissionError) as exc:
        raise SourceError(f"cannot read input {source}: {exc}") from exc
    except (pa.ArrowException, OSError, SchemaError) as exc:
        if side is not None:
            side.abandon()
        return quarantine(source, relative, output_root, exc, run_id, started)
    result.rejects = str(rejects) if result.rejected else None
    result.seconds = time.perf_counter() - started
    return result


def score_rows(
    parquet: pq.ParquetFile,
    scorer: Scorer,
    result: FileResult,
    *,
    schema: pa.Schema,
    chunk_size: int,
    source: Location,
    run_id: str,
    write_scored: Callable[[pa.Table], None],
    write_rejected: Callable[[pd.DataFrame], None],
    start: int = 0,
    stop: int | None = None,
    side: _Shadow | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> None:
    """Score rows ``[start, stop)`` of ``parquet`` in chunks, adding the counts to ``result``.

    Only the row groups holding those rows are read, and ``source_row`` stays the row of the file.
    """
    metadata = parquet.metadata
    stop = metadata.num_rows if stop is None else stop
    first = np.cumsum([0, *(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))])
    groups = [i for i in range(metadata.num_row_groups) if first[i] < stop and first[i + 1] > start]
    if not groups:
        return
    computed = frozenset(scorer.output_columns)
    position = int(first[groups[0]])
    for batch in parquet.iter_batches(batch_size=chunk_size, row_groups=groups):
        begin, end = position, position + batch.num_rows
        position = end
        if begin >= stop:
            break  # the rest of the last row group belongs to the next part
        low, high = max(begin, start), min(end, stop)
        if high <= low:
            continue
        if (low, high) != (begin, end):
            batch = batch.slice(low - begin, high - low)
        frame = batch.to_pandas()
        frame.index = pd.RangeIndex(low, high)
        scored = scorer.score(frame)
        bad = scored[REJECT_REASON].notna().to_numpy()
        write_scored(_output_table(batch, scored, ~bad, schema, computed=computed, source=str(source), run_id=run_id))
        if bad.any():
            write_rejected(_rejected_rows(frame[bad], scored[bad], source, run_id, scorer.version))
        if side is not None:
            side.score(batch, frame, scored, source=str(source), run_id=run_id)
        result.rows += len(frame)
        result.scored += int((~bad).sum())
        result.rejected += int(bad.sum())
        if on_rows is not None:
            on_rows(len(frame))


class _Shadow:
    """The challenger's side of one file: its own atomic output, agreement, and failure kept to itself."""

    def __init__(
        self, challenger: Scorer, path: Location, input_schema: pa.Schema, expected: dict | None, champion: Scorer
    ) -> None:
        self.challenger = challenger
        self.path = path
        self.classes = champion.bundle.classes
        self.agreement = Agreement(champion.version, challenger.version)
        self.error: str | None = None
        self.computed = frozenset(challenger.output_columns)
        self.writer: AtomicParquet | None = None
        try:
            self.schema = output_schema(input_schema, challenger, expected or {})
            self.writer = AtomicParquet(path, self.schema)
        except Exception as exc:  # noqa: BLE001 - a broken challenger is reported, never raised
            self._fail(exc)

    def score(self, batch: pa.RecordBatch, frame: pd.DataFrame, champion: pd.DataFrame, **lineage: str) -> None:
        if self.writer is None:
            return
        try:
            scored = self.challenger.score(frame)
            keep = scored[REJECT_REASON].isna().to_numpy()
            self.writer.write(_output_table(batch, scored, keep, self.schema, computed=self.computed, **lineage))
            self.agreement.add(champion, scored, self.classes)
        except Exception as exc:  # noqa: BLE001 - whatever the challenger raises stays on its side
            self._fail(exc)

    def finish(self, result: FileResult) -> None:
        if self.writer is not None:
            try:
                self.writer.commit()
                result.shadow_output = str(self.path)
                result.agreement = self.agreement.to_dict()
            except SinkError as exc:
                self._fail(exc)
        result.shadow_error = self.error

    def abandon(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None

    def _fail(self, exc: Exception) -> None:
        self.error = f"challenger v{self.challenger.version}: {type(exc).__name__}: {exc}"
        self.abandon()


def output_schema(input_schema: pa.Schema, scorer: Scorer, expected: dict) -> pa.Schema:
    """Output columns and types fixed up front, so every chunk writes to one schema."""
    schema = scorer.bundle.schema
    fields = []
    added = {*scorer.output_columns, *LINEAGE}
    for column in input_schema:
        if column.name in added:
            continue
        if column.name in schema.names:
            kind = schema.spec(column.name).kind
            fields.append(pa.field(column.name, pa.float64() if kind == "numeric" else pa.string()))
        else:
            fields.append(column.remove_metadata())
    for name in schema.names:  # features absent from the input make validation fail; keep order stable anyway
        if name not in input_schema.names:
            kind = schema.spec(name).kind
            fields.append(pa.field(name, pa.float64() if kind == "numeric" else pa.string()))
    classes = np.asarray(scorer.bundle.classes)
    prediction_type = pa.int64() if np.issubdtype(classes.dtype, np.integer) else pa.string()
    fields.append(pa.field(PREDICTION, prediction_type))
    fields += [pa.field(c, pa.float64()) for c in scorer.proba_columns]
    fields += [
        pa.field(CONFIDENCE, pa.float64()),
        pa.field(MODEL_VERSION, pa.int64()),
        pa.field(SCORED_AT, pa.timestamp("us", tz="UTC")),
        pa.field(FLOW_RUN_ID, pa.string()),
        pa.field(SOURCE_FILE, pa.string()),
        pa.field(SOURCE_ROW, pa.int64()),
    ]
    recorded = dict(expected)
    if mlflow := scorer.bundle.info.get("mlflow"):  # which MLflow model version scored this file
        recorded["mlflow"] = {k: mlflow.get(k) for k in ("model_name", "model_version", "run_id", "uri")}
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(recorded).encode()})


def _output_table(
    batch: pa.RecordBatch,
    scored: pd.DataFrame,
    keep: np.ndarray,
    schema: pa.Schema,
    *,
    computed: frozenset[str],
    source: str,
    run_id: str,
) -> pa.Table:
    """Assemble the kept rows as an Arrow table in ``schema``.

    Columns the input already holds in the output's type are taken from the Arrow batch as they
    are (no round trip of strings through Python objects); cast features and scores come from
    the scored frame; lineage constants are built in Arrow.
    """
    n = int(keep.sum())
    everything = bool(keep.all())
    mask = None if everything else pa.array(keep)
    columns = []
    for out_field in schema:
        name = out_field.name
        if name in (FLOW_RUN_ID, SOURCE_FILE):
            value = run_id if name == FLOW_RUN_ID else source
            columns.append(pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int32))))
        elif name == SOURCE_ROW:
            columns.append(pa.array(scored.index.to_numpy(dtype=np.int64)[keep]))
        elif name not in computed and name in batch.schema.names and batch.schema.field(name).type == out_field.type:
            column = batch.column(name)
            columns.append(column if mask is None else column.filter(mask))
        else:
            series = scored[name] if everything else scored[name][keep]
            columns.append(pa.Array.from_pandas(series, type=out_field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _rejected_rows(
    original: pd.DataFrame, scored: pd.DataFrame, source: Location, run_id: str, version: int
) -> pd.DataFrame:
    """Rejected rows as the input had them (as text, so any value survives) plus why and where."""
    as_objects = original.astype(object)
    raw = as_objects.where(original.notna(), None).map(lambda v: v if v is None else str(v))  # type: ignore[call-overload]
    return raw.assign(
        **{
            REJECT_REASON: scored[REJECT_REASON].to_numpy(),
            MODEL_VERSION: version,
            FLOW_RUN_ID: run_id,
            SOURCE_FILE: str(source),
            SOURCE_ROW: original.index.to_numpy(dtype=np.int64),
        }
    )
