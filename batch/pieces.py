"""One big file on many workers: row ranges scored apart, then written as the one output file.

The Dask runners parallelize by files, so a night delivered as one large file used one worker and
paid for the cluster. A file with enough rows is cut into up to two row ranges per worker, each of at
least ``batch_split_rows`` rows (along row-group boundaries when that keeps the parts that large, so
no worker decodes another's rows; else by rows). Two per worker: the driver joins the first parts
while the workers score the last ones.
Each worker scores its range exactly as ``score_file`` scores a chunk (same validation, model and
lineage: ``source_row`` is the row of the input file) into an Arrow IPC part under
``_parts/<run id>/``; uncompressed IPC costs the workers no Parquet encoding. When every part of a
file is in, the driver writes them in order through the same atomic writer as ``score_file``, so the
output appears whole or not at all, carries the same fingerprint (a re-run skips it), and the parts
are deleted. A part that cannot decode its rows quarantines the whole file, as ``score_file`` would.

Written here because Dask and Prefect schedule tasks but know nothing of splitting a Parquet file
by rows and putting the pieces back in order atomically.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from batch.engine import fingerprint, is_current, output_schema, score_rows
from batch.results import FileResult
from batch.sinks import AtomicParquet, quarantine
from scoring import SchemaError, Scorer, ScoringError, SinkError, SourceError
from scoring.layout import PARTS_DIR, REJECTED_DIR
from scoring.sources import InputSet
from scoring.storage import Location

# Two parts per worker: the driver joins the first parts while the workers score the later ones.
PARTS_PER_WORKER = 2


@dataclass(frozen=True)
class Piece:
    """Rows ``[start, stop)`` of one input file, part ``part`` of ``parts``; one part is the whole file."""

    source: str
    start: int = 0
    stop: int = 0
    part: int = 0
    parts: int = 1

    @property
    def whole(self) -> bool:
        return self.parts == 1

    @property
    def label(self) -> str:
        return self.source if self.whole else f"{self.source} rows {self.start:,}-{self.stop - 1:,}"


def plan(inputs: InputSet, *, output: str, model_version: int, workers: int, min_rows: int, force: bool) -> list[Piece]:
    """The pieces of a run, in input order: each file whole, or cut into up to two row ranges per worker.

    A file is cut only if each of at least two parts gets ``min_rows`` rows and its output is not already
    current (a file to skip is left whole: its worker skips it as it always has). A file whose
    footer cannot be read is left whole too, so that ``score_file`` quarantines it.
    """
    pieces: list[Piece] = []
    for source in inputs.files:
        ranges = _ranges(source, inputs, output, model_version, workers, min_rows, force)
        if len(ranges) < 2:
            pieces.append(Piece(str(source)))
            continue
        pieces += [Piece(str(source), a, b, i, len(ranges)) for i, (a, b) in enumerate(ranges)]
    return pieces


def _ranges(
    source: Location, inputs: InputSet, output: str, version: int, workers: int, min_rows: int, force: bool
) -> list[tuple[int, int]]:
    if workers < 2:
        return []
    try:
        if not force and is_current(Location(output) / str(inputs.relative(source)), fingerprint(source, version)):
            return []
        metadata = pq.ParquetFile(source.path, filesystem=source.fs).metadata
    except (OSError, pa.ArrowException, ValueError):
        return []
    rows = metadata.num_rows
    parts = min(workers * PARTS_PER_WORKER, rows // max(1, min_rows))
    if parts < 2:
        return []
    by_rows = [0, *(rows * k // parts for k in range(1, parts)), rows]
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    ends = np.cumsum(sizes)
    # Along row-group boundaries (no worker decodes another's rows) when every part still gets min_rows.
    nearest = sorted({int(ends[np.abs(ends - cut).argmin()]) for cut in by_rows[1:-1]} - {0, rows})
    by_groups = [0, *nearest, rows]
    grouped = len(by_groups) == parts + 1 and all(
        b - a >= min_rows for a, b in zip(by_groups, by_groups[1:], strict=False)
    )
    bounds = by_groups if grouped else by_rows
    return list(zip(bounds, bounds[1:], strict=False))


def part_paths(output: str, run_id: str, relative: PurePosixPath, part: int) -> tuple[Location, Location]:
    """Where part ``part`` of an input keeps its scored rows and its rejected rows until they are stitched."""
    folder = Location(output) / PARTS_DIR / run_id / str(relative)
    return folder / f"{part:05d}.arrow", folder / f"{part:05d}.rejected.arrow"


def score_piece(
    piece: Piece, inputs: InputSet, output: str, scorer: Scorer, *, chunk_size: int, run_id: str
) -> FileResult:
    """Score one part of a file into its IPC parts; a result with the counts (``quarantined``: unreadable)."""
    started = time.perf_counter()
    source = Location(piece.source)
    relative = inputs.relative(source)
    scored_path, rejected_path = part_paths(output, run_id, relative, piece.part)
    result = FileResult(piece.source, "scored", output=str(scored_path))
    try:
        parquet = pq.ParquetFile(source.path, filesystem=source.fs)
        schema = output_schema(parquet.schema_arrow, scorer, fingerprint(source, scorer.version))
        with _IpcPart(scored_path, schema) as write_scored, _IpcPart(rejected_path, None) as write_rejected:
            score_rows(
                parquet, scorer, result, schema=schema, start=piece.start, stop=piece.stop, chunk_size=chunk_size,
                source=source, run_id=run_id, write_scored=write_scored, write_rejected=write_rejected,
            )  # fmt: skip
    except (FileNotFoundError, PermissionError) as exc:
        raise SourceError(f"cannot read input {source}: {exc}") from exc
    except (pa.ArrowException, OSError, SchemaError) as exc:  # the input's rows cannot be decoded: quarantine
        result.status, result.error = "quarantined", f"{type(exc).__name__}: {exc}"
    result.seconds = time.perf_counter() - started
    return result


class Joiner:
    """Joins one file's parts into its output as they arrive, in order.

    The driver writes part k while the workers still score the later parts; ``add`` returns the
    file's result with its last part.
    """

    def __init__(self, inputs: InputSet, output: str, run_id: str, source: str) -> None:
        self.started = time.perf_counter()
        self.inputs, self.output, self.run_id = inputs, output, run_id
        self.source = Location(source)
        self.relative = inputs.relative(self.source)
        self.target = Location(output) / str(self.relative)
        self.rejects = Location(output) / REJECTED_DIR / str(self.relative)
        self._scored: AtomicParquet | None = None
        self._rejected: AtomicParquet | None = None
        self._results: list[FileResult] = []
        self._paths: list[tuple[Location, Location]] = []
        self._error: str | None = None

    def add(self, piece: Piece, result: FileResult) -> FileResult | None:
        paths = part_paths(self.output, self.run_id, self.relative, piece.part)
        self._results.append(result)
        self._paths.append(paths)
        if result.status in ("failed", "quarantined"):
            self._abort()
        elif self._error is None:
            try:
                self._scored = _append(paths[0], self.target, self._scored, required=True)
                self._rejected = _append(paths[1], self.rejects, self._rejected, required=False)
            except Exception as exc:  # noqa: BLE001 - reported per file, like any failure, never raised
                self._error = f"joining the parts of {self.source}: {type(exc).__name__}: {exc}"
                self._abort()
        self._delete(paths)
        if piece.part < piece.parts - 1:
            return None
        try:
            return self._finish()
        except Exception as exc:  # noqa: BLE001 - the quarantine or a commit failed: this file's result, not the run's
            self._abort()
            return FileResult(str(self.source), "failed", error=f"{type(exc).__name__}: {exc}")

    def _finish(self) -> FileResult:
        with contextlib.suppress(OSError):
            folder = self._paths[0][0].parent
            folder.fs.delete_dir(folder.path)
        results = self._results
        if failed := [r for r in results if r.status == "failed"]:
            return FileResult(str(self.source), "failed", error="; ".join(f"{r.error}" for r in failed))
        if unreadable := [r for r in results if r.status == "quarantined"]:
            error = SourceError(unreadable[0].error)
            return quarantine(self.source, self.relative, Location(self.output), error, self.run_id, self.started)
        if self._error is not None:
            return FileResult(str(self.source), "failed", error=self._error)
        result = FileResult(str(self.source), "scored", output=str(self.target))
        result.rows = sum(r.rows for r in results)
        result.scored = sum(r.scored for r in results)
        result.rejected = sum(r.rejected for r in results)
        try:
            assert self._scored is not None  # the first part always writes (its schema, at least)
            # Rejects first: the output carries the fingerprint a re-run trusts, so it is committed last.
            if self._rejected is not None:
                self._rejected.commit()
                result.rejects = str(self.rejects)
            elif self.rejects.exists():
                self.rejects.unlink()  # a stale rejects file from an earlier run no longer applies
            self._scored.commit()
        except ScoringError as exc:
            self._abort()
            return FileResult(str(self.source), "failed", error=f"{type(exc).__name__}: {exc}")
        result.seconds = time.perf_counter() - self.started
        return result

    def _abort(self) -> None:
        for sink in (self._scored, self._rejected):
            if sink is not None:
                sink.abort()
        self._scored = self._rejected = None
        self._error = self._error or "a part failed"

    @staticmethod
    def _delete(paths: tuple[Location, Location]) -> None:
        for path in paths:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


def stitch(pieces: list[Piece], results: list[FileResult], inputs: InputSet, output: str, run_id: str) -> FileResult:
    """Join a file's scored parts, in order, into its one output (and its rejects); the parts are deleted."""
    joiner = Joiner(inputs, output, run_id, pieces[0].source)
    joined = None
    for piece, result in zip(pieces, results, strict=True):
        joined = joiner.add(piece, result)
    assert joined is not None
    return joined


def _append(part: Location, target: Location, sink: AtomicParquet | None, *, required: bool) -> AtomicParquet | None:
    """Append one IPC part's batches to ``target``'s atomic writer (opened on the first part that exists)."""
    if not part.exists():
        if required:
            raise SourceError(f"part {part} of {target} is missing")
        return sink
    with part.fs.open_input_file(part.path) as stream:
        reader = pa.ipc.open_file(stream)
        if sink is None:
            sink = AtomicParquet(target, reader.schema)
        elif sink.schema is not None and reader.schema.metadata != sink.schema.metadata:
            raise SourceError(f"the parts of {target} were scored from different inputs: it changed during the run")
        for i in range(reader.num_record_batches):
            sink.write(pa.Table.from_batches([reader.get_batch(i)]))
    return sink


class _IpcPart:
    """Appends Arrow tables to an IPC file (schema from the first table when ``None``); nothing if none comes.

    Written to a temporary twin and renamed on a clean exit, so a task run twice (a worker taken for
    lost while it still ran) never interleaves two writers in one part.
    """

    def __init__(self, target: Location, schema: pa.Schema | None) -> None:
        self.target, self.schema = target, schema
        self.tmp = target.temporary_sibling()
        self._stream = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None

    def __enter__(self):  # noqa: ANN204 - returns the write function
        return self.write

    def write(self, data: pa.Table | pd.DataFrame) -> None:
        try:
            self._write(data)
        except (OSError, pa.ArrowException) as exc:  # ours to retry (a full disk, a store away), never the input's
            raise SinkError(f"cannot write part {self.target}: {exc}") from exc

    def _write(self, data: pa.Table | pd.DataFrame) -> None:
        table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        if self._writer is None:
            if self.schema is None:
                self.schema = pa.schema(
                    [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
                )
            self.target.parent.mkdir()
            self._stream = self.tmp.fs.open_output_stream(self.tmp.path)
            self._writer = pa.ipc.new_file(self._stream, self.schema)
        assert self.schema is not None
        self._writer.write_table(table.cast(self.schema) if table.schema != self.schema else table)

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
            if self._stream is not None:
                self._stream.close()
                if kind is None:
                    self.tmp.move_to(self.target)
        except (OSError, pa.ArrowException) as exc:
            if kind is None:
                raise SinkError(f"cannot write part {self.target}: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                self.tmp.unlink(missing_ok=True)
