"""Batch scoring of Parquet files, free of Prefect so it runs the same inside and outside a flow.

One input file becomes one output file with the same relative path under the output folder,
plus, if any row was rejected, a rejects file under ``_rejected/``. Files are read in bounded
chunks with ``iter_batches`` and written through a ``ParquetWriter`` to a temporary name that
is renamed into place only when complete, so a crash never leaves a half-written result and a
re-run replaces rather than duplicates. An input that cannot be decoded is copied to
``_quarantine/`` with its error next to it, and the other files are scored anyway.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from scoring import SchemaError, Scorer, SinkError, SourceError
from scoring.agreement import Agreement
from scoring.scorer import CONFIDENCE, MODEL_VERSION, PREDICTION, REJECT_REASON, SCORED_AT
from scoring.sources import InputSet, discover_inputs
from scoring.storage import Location, as_location

REJECTED_DIR = "_rejected"
QUARANTINE_DIR = "_quarantine"
SHADOW_DIR = "_shadow"  # a challenger's outputs, mirroring the champion's paths
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
    shadow_output: str | None = None
    shadow_error: str | None = None
    agreement: dict | None = None  # Agreement.to_dict() of champion vs challenger on this file


@dataclass
class BatchSummary:
    """What one batch run did, file by file, with totals; returned by the flow and the CLI."""

    run_id: str
    model_version: int
    input: str
    output: str
    files: list[FileResult] = field(default_factory=list)
    shadow_version: int | None = None

    def count(self, status: Status) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def rows_scored(self) -> int:
        return sum(f.scored for f in self.files)

    @property
    def rows_rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    def agreement(self) -> Agreement | None:
        """Champion/challenger agreement over every file scored with a shadow in this run."""
        parts = [Agreement.from_dict(f.agreement) for f in self.files if f.agreement]
        if not parts:
            return None
        total = parts[0]
        for part in parts[1:]:
            total.merge(part)
        return total

    def to_dict(self) -> dict:
        agreement = self.agreement()
        return {
            "run_id": self.run_id,
            "model_version": self.model_version,
            "shadow_version": self.shadow_version,
            "shadow_agreement": agreement.summary() if agreement else None,
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
) -> FileResult:
    """Score one Parquet file in chunks; write its results and rejects atomically.

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
        out_schema = _output_schema(parquet.schema_arrow, scorer, expected)
        computed = frozenset(scorer.output_columns)
        side = _Shadow(shadow, shadow_path, parquet.schema_arrow, shadow_expected, scorer) if shadow else None
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
                if side is not None:
                    side.score(batch, frame, scored, source=str(source), run_id=run_id)
                result.rows += len(frame)
                result.scored += int((~bad).sum())
                result.rejected += int(bad.sum())
                position += len(frame)
                if (progress := ROWS_SCORED.get()) is not None:
                    progress(len(frame))
            if not result.rejected and rejects.exists():
                rejects.unlink()  # a stale rejects file from an earlier run no longer applies
        if side is not None:
            side.finish(result)
    except (FileNotFoundError, PermissionError) as exc:
        raise SourceError(f"cannot read input {source}: {exc}") from exc
    except (pa.ArrowException, OSError, SchemaError) as exc:
        if side is not None:
            side.abandon()
        return _quarantine(source, relative, output_root, exc, run_id, started)
    result.rejects = str(rejects) if result.rejected else None
    result.seconds = time.perf_counter() - started
    return result


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
        self.writer: _AtomicParquet | None = None
        try:
            self.schema = _output_schema(input_schema, challenger, expected or {})
            self.writer = _AtomicParquet(path, self.schema)
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


def run_batch(
    input: str | Path,
    output: str | Path,
    scorer: Scorer,
    *,
    chunk_size: int,
    run_id: str | None = None,
    force: bool = False,
    shadow: Scorer | None = None,
    score_one_file: Callable[..., FileResult] = score_file,
    score_all: Callable[[InputSet], list[FileResult]] | None = None,
) -> BatchSummary:
    """Score every input file; a failure in one file never stops the others.

    ``score_all`` scores every file at once elsewhere (``flows.parallel`` on Dask); without it
    the files are scored here, one after another.
    """
    inputs = discover_inputs(input)
    output_root = as_location(output)
    summary = BatchSummary(
        run_id=run_id or f"local-{uuid.uuid4()}",
        model_version=scorer.version,
        input=str(input),
        output=str(output),
        shadow_version=shadow.version if shadow is not None else None,
    )
    if score_all is not None:
        summary.files = score_all(inputs)
        return summary
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
                shadow=shadow,
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
    original: pd.DataFrame, scored: pd.DataFrame, source: Location, run_id: str, version: int
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


class _AtomicParquet:
    """Appends to ``target``'s temporary twin and renames it into place on ``commit``; ``abort`` discards.

    With ``schema=None`` the schema comes from the first frame, and nothing is written (and
    ``target`` is left alone) if no frame arrives. Write failures (a full disk, a type our output
    cannot hold) raise ``SinkError``: they are ours to retry or fix, never the input's fault.
    """

    def __init__(self, target: Location, schema: pa.Schema | None) -> None:
        self.target = target
        self.schema = schema
        self.tmp = target.temporary_sibling()
        self._writer: pq.ParquetWriter | None = None

    def _open(self, schema: pa.Schema) -> pq.ParquetWriter:
        self.target.parent.mkdir()
        return pq.ParquetWriter(self.tmp.path, schema, filesystem=self.tmp.fs)

    def write(self, data: pd.DataFrame | pa.Table) -> None:
        try:
            if self._writer is None:
                if self.schema is None:
                    inferred = (
                        data.schema if isinstance(data, pa.Table) else pa.Schema.from_pandas(data, preserve_index=False)
                    )
                    self.schema = pa.schema(
                        [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in inferred]
                    )
                self._writer = self._open(self.schema)
            schema = self.schema
            if isinstance(data, pd.DataFrame):
                data = pa.Table.from_pandas(data[schema.names], schema=schema, preserve_index=False)
            self._writer.write_table(data.replace_schema_metadata(schema.metadata))
        except (OSError, pa.ArrowException) as exc:
            raise SinkError(f"cannot write {self.target}: {exc}") from exc

    def commit(self) -> None:
        try:
            if self._writer is None and self.schema is not None:
                self._writer = self._open(self.schema)  # an input with zero rows still gets its (empty) output
            if self._writer is not None:
                self._writer.close()
                self._writer = None
                self.tmp.move_to(self.target)
        except (OSError, pa.ArrowException) as exc:
            raise SinkError(f"cannot write {self.target}: {exc}") from exc
        finally:
            self.abort()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)


@contextmanager
def _atomic_writer(target: Location, schema: pa.Schema | None) -> Iterator[Callable[[pd.DataFrame | pa.Table], None]]:
    """Yield a function appending to ``target`` atomically (see ``_AtomicParquet``); commit on success."""
    sink = _AtomicParquet(target, schema)
    try:
        yield sink.write
        sink.commit()
    finally:
        sink.abort()


def _quarantine(
    source: Location, relative: PurePosixPath, output_root: Location, exc: Exception, run_id: str, started: float
) -> FileResult:
    """Copy an unscorable input aside with its error; the input itself is left where it was."""
    target = output_root / QUARANTINE_DIR / relative
    error = f"{type(exc).__name__}: {exc}"
    tmp = target.temporary_sibling()
    source.copy_to(tmp)
    tmp.move_to(target)
    report = {
        "source": str(source),
        "error": error,
        "flow_run_id": run_id,
        "quarantined_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    error_file = target.with_name(target.name + ".error.json")
    error_file.write_text(json.dumps(report, indent=2))  # whole or not at all, locally and on S3
    return FileResult(
        str(source), "quarantined", output=str(target), error=error, seconds=time.perf_counter() - started
    )
