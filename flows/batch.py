"""Batch scoring of Parquet files, free of Prefect so it runs the same inside and outside a flow.

One input file becomes one output file with the same relative path under the output folder,
plus, if any row was rejected, a rejects file under ``_rejected/``. Files are read in bounded
chunks with ``iter_batches`` and written through a ``ParquetWriter`` to a temporary name that
is renamed into place only when complete, so a crash never leaves a half-written result and a
re-run replaces rather than duplicates. An input that cannot be decoded is copied to
``_quarantine/`` with its error next to it, and the other files are scored anyway.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scoring import SchemaError, Scorer, SinkError, SourceError
from scoring.scorer import CONFIDENCE, MODEL_VERSION, PREDICTION, REJECT_REASON, SCORED_AT
from scoring.sources import InputSet, discover_inputs

REJECTED_DIR = "_rejected"
QUARANTINE_DIR = "_quarantine"
METADATA_KEY = b"scorepipe"
FLOW_RUN_ID = "flow_run_id"
SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"
LINEAGE = (FLOW_RUN_ID, SOURCE_FILE, SOURCE_ROW)

Status = Literal["scored", "skipped", "quarantined", "failed"]

# Set by an interactive caller (the CLI's progress bar) to hear of every chunk scored.
ROWS_SCORED: ContextVar[Callable[[int], None] | None] = ContextVar("ROWS_SCORED", default=None)


@dataclass
class FileResult:
    """What happened to one input file."""

    source: str
    status: Status
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    output: str | None = None
    rejects: str | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class BatchSummary:
    """What one batch run did, file by file, with totals; returned by the flow and the CLI."""

    run_id: str
    model_version: int
    input: str
    output: str
    files: list[FileResult] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def rows_scored(self) -> int:
        return sum(f.scored for f in self.files)

    @property
    def rows_rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "model_version": self.model_version,
            "input": self.input,
            "output": self.output,
            "files_scored": self.count("scored"),
            "files_skipped": self.count("skipped"),
            "files_quarantined": self.count("quarantined"),
            "files_failed": self.count("failed"),
            "rows_scored": self.rows_scored,
            "rows_rejected": self.rows_rejected,
            "files": [asdict(f) for f in self.files],
        }


def fingerprint(source: Path, model_version: int) -> dict:
    """What makes an output current: the exact input file (size, mtime) and the model version."""
    stat = source.stat()
    return {
        "source": str(source.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "model_version": model_version,
    }


def is_current(output: Path, expected: dict) -> bool:
    """True if ``output`` exists and was written from the same input by the same model version."""
    if not output.exists():
        return False
    try:
        metadata = pq.read_schema(output).metadata or {}
        recorded = json.loads(metadata.get(METADATA_KEY, b"{}"))
    except (pa.ArrowException, OSError, ValueError):
        return False
    return {k: recorded.get(k) for k in expected} == expected


def score_file(
    source: Path,
    inputs: InputSet,
    output_root: Path,
    scorer: Scorer,
    *,
    chunk_size: int,
    run_id: str,
    force: bool = False,
) -> FileResult:
    """Score one Parquet file in chunks; write its results and rejects atomically."""
    started = time.perf_counter()
    relative = inputs.relative(source)
    output = output_root / relative
    rejects = output_root / REJECTED_DIR / relative
    try:
        expected = fingerprint(source, scorer.version)
    except (FileNotFoundError, PermissionError) as exc:
        raise SourceError(f"cannot read input {source}: {exc}") from exc
    if not force and is_current(output, expected):
        return FileResult(str(source), "skipped", output=str(output), seconds=time.perf_counter() - started)
    result = FileResult(str(source), "scored", output=str(output))
    try:
        parquet = pq.ParquetFile(source)
        out_schema = _output_schema(parquet.schema_arrow, scorer, expected)
        computed = frozenset(scorer.output_columns)
        with _atomic_writer(output, out_schema) as write_scored, _atomic_writer(rejects, None) as write_rejected:
            position = 0
            for batch in parquet.iter_batches(batch_size=chunk_size):
                frame = batch.to_pandas()
                frame.index = pd.RangeIndex(position, position + len(frame))
                scored = scorer.score(frame)
                bad = scored[REJECT_REASON].notna().to_numpy()
                write_scored(
                    _output_table(batch, scored, ~bad, out_schema, computed=computed, source=str(source), run_id=run_id)
                )
                if bad.any():
                    write_rejected(_rejected_rows(frame[bad], scored[bad], source, run_id, scorer.version))
                result.rows += len(frame)
                result.scored += int((~bad).sum())
                result.rejected += int(bad.sum())
                position += len(frame)
                if (progress := ROWS_SCORED.get()) is not None:
                    progress(len(frame))
            if not result.rejected and rejects.exists():
                rejects.unlink()  # a stale rejects file from an earlier run no longer applies
    except (FileNotFoundError, PermissionError) as exc:
        raise SourceError(f"cannot read input {source}: {exc}") from exc
    except (pa.ArrowException, OSError, SchemaError) as exc:
        return _quarantine(source, relative, output_root, exc, run_id, started)
    result.rejects = str(rejects) if result.rejected else None
    result.seconds = time.perf_counter() - started
    return result


def run_batch(
    input: str | Path,
    output: str | Path,
    scorer: Scorer,
    *,
    chunk_size: int,
    run_id: str | None = None,
    force: bool = False,
    score_one_file: Callable[..., FileResult] = score_file,
) -> BatchSummary:
    """Score every input file; a failure in one file never stops the others."""
    inputs = discover_inputs(input)
    output_root = Path(output)
    summary = BatchSummary(
        run_id=run_id or f"local-{uuid.uuid4()}", model_version=scorer.version, input=str(input), output=str(output)
    )
    for source in inputs.files:
        try:
            result = score_one_file(
                source,
                inputs,
                output_root,
                scorer,
                chunk_size=chunk_size,
                run_id=summary.run_id,
                force=force,
            )
        except Exception as exc:  # noqa: BLE001 - recorded per file; the run reports it and fails at the end
            result = FileResult(str(source), "failed", error=f"{type(exc).__name__}: {exc}")
        summary.files.append(result)
    return summary


def _output_schema(input_schema: pa.Schema, scorer: Scorer, expected: dict) -> pa.Schema:
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
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(expected).encode()})


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
    original: pd.DataFrame, scored: pd.DataFrame, source: Path, run_id: str, version: int
) -> pd.DataFrame:
    """Rejected rows as the input had them (as text, so any value survives) plus why and where."""
    raw = original.astype(object).where(original.notna(), None).map(lambda v: v if v is None else str(v))
    return raw.assign(
        **{
            REJECT_REASON: scored[REJECT_REASON].to_numpy(),
            MODEL_VERSION: version,
            FLOW_RUN_ID: run_id,
            SOURCE_FILE: str(source),
            SOURCE_ROW: original.index.to_numpy(dtype=np.int64),
        }
    )


@contextmanager
def _atomic_writer(target: Path, schema: pa.Schema | None) -> Iterator[Callable[[pd.DataFrame | pa.Table], None]]:
    """Yield a function that appends frames or tables to ``target``'s temporary twin; rename on success.

    With ``schema=None`` the schema comes from the first frame, and nothing is written (and
    ``target`` is left alone) if no frame arrives. Write failures (a full disk, a type our output
    cannot hold) raise ``SinkError``: they are ours to retry or fix, never the input's fault.
    """
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    writer: pq.ParquetWriter | None = None

    def open_writer(with_schema: pa.Schema) -> pq.ParquetWriter:
        target.parent.mkdir(parents=True, exist_ok=True)
        return pq.ParquetWriter(tmp, with_schema)

    def write(data: pd.DataFrame | pa.Table) -> None:
        nonlocal writer, schema
        try:
            if writer is None:
                if schema is None:
                    inferred = (
                        data.schema if isinstance(data, pa.Table) else pa.Schema.from_pandas(data, preserve_index=False)
                    )
                    schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in inferred])
                writer = open_writer(schema)
            if isinstance(data, pd.DataFrame):
                data = pa.Table.from_pandas(data[schema.names], schema=schema, preserve_index=False)
            writer.write_table(data.replace_schema_metadata(schema.metadata))
        except (OSError, pa.ArrowException) as exc:
            raise SinkError(f"cannot write {target}: {exc}") from exc

    try:
        yield write
        try:
            if writer is None and schema is not None:
                writer = open_writer(schema)  # an input with zero rows still gets its (empty) output
            if writer is not None:
                writer.close()
                writer = None
                os.replace(tmp, target)
        except (OSError, pa.ArrowException) as exc:
            raise SinkError(f"cannot write {target}: {exc}") from exc
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)


def _quarantine(
    source: Path, relative: Path, output_root: Path, exc: Exception, run_id: str, started: float
) -> FileResult:
    """Copy an unscorable input aside with its error; the input itself is left where it was."""
    target = output_root / QUARANTINE_DIR / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    error = f"{type(exc).__name__}: {exc}"
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    report = {
        "source": str(source),
        "error": error,
        "flow_run_id": run_id,
        "quarantined_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    error_file = target.with_name(target.name + ".error.json")
    error_file.write_text(json.dumps(report, indent=2))
    return FileResult(
        str(source), "quarantined", output=str(target), error=error, seconds=time.perf_counter() - started
    )
