"""Where the files of a batch run are scored: one after another here, or in parallel on Dask.

Every runner takes the same ``BatchJob`` and returns one ``FileResult`` per file, in input order;
a file that fails (after its retries) is reported in its result, never raised, so one bad file
never stops the others. The engine (``batch.engine.score_file``) does not know which runner it
is on. ``flows.score_batch`` adds Prefect's own runners (a task run per file) beside these.

Only plain values cross to Dask workers: a file's path and the ``BatchJob`` naming the registry
and the model *version* the run resolved (so a promotion during the run changes nothing). Each
worker loads that version once, with the usual hash check, and scores on one BLAS/OpenMP thread
so that N workers use N cores rather than N times as many threads.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from batch.engine import score_file
from batch.pieces import Joiner, Piece, plan, score_piece
from batch.results import FileResult
from scoring import Registry, Scorer, ScoringError
from scoring.scorer import ALL_VERIFIED, ScorerOptions
from scoring.sources import InputSet
from scoring.storage import Location

RowsScored = Callable[[int], None]


@dataclass(frozen=True)
class BatchJob:
    """What every file of one run shares, as plain values a worker can receive."""

    output: str
    chunk_size: int
    run_id: str
    force: bool = False
    registry: str = ""  # where a worker loads the versions from (unused in this process)
    model_version: int = 0
    shadow_version: int | None = None
    options: ScorerOptions = ALL_VERIFIED
    split_rows: int = 0  # on Dask, a file is cut into row ranges of at least this many rows (0: never)


@dataclass(frozen=True)
class DaskOptions:
    """Where to run: ``address`` of an existing scheduler, else a LocalCluster of ``workers`` (0: one per core)."""

    workers: int = 0
    address: str | None = None

    def cluster_kwargs(self) -> dict[str, Any]:
        """LocalCluster settings: single-threaded worker processes, every socket on loopback."""
        return {
            "n_workers": self.workers or os.cpu_count() or 1,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
        }

    def describe(self) -> str:
        if self.address:
            return f"Dask cluster at {self.address}"
        return f"LocalCluster of {self.cluster_kwargs()['n_workers']} single-threaded workers"


class Runner(ABC):
    """Scores every file of ``inputs`` for ``job``; ``on_rows`` hears of rows scored as they are."""

    @abstractmethod
    def run(self, inputs: InputSet, job: BatchJob, on_rows: RowsScored | None = None) -> list[FileResult]:
        """One result per input file, in order; failures are results, not exceptions."""

    def describe(self) -> str:
        return "one file after another in this process"


class SequentialRunner(Runner):
    """One file after another in this process, with the run's already loaded scorers.

    ``score_one`` is the engine's ``score_file`` or a wrapper with the same signature (the flow
    passes a Prefect task of it, for retries and states per file).
    """

    def __init__(
        self, scorer: Scorer, shadow: Scorer | None = None, *, score_one: Callable[..., FileResult] = score_file
    ) -> None:
        self.scorer = scorer
        self.shadow = shadow
        self.score_one = score_one

    def run(self, inputs: InputSet, job: BatchJob, on_rows: RowsScored | None = None) -> list[FileResult]:
        results = []
        for source in inputs.files:
            try:
                result = self.score_one(
                    source,
                    inputs,
                    Location(job.output),
                    self.scorer,
                    chunk_size=job.chunk_size,
                    run_id=job.run_id,
                    force=job.force,
                    shadow=self.shadow,
                    on_rows=on_rows,
                )
            except Exception as exc:  # noqa: BLE001 - recorded per file; the run reports it and fails at the end
                result = FileResult(str(source), "failed", error=f"{type(exc).__name__}: {exc}")
            results.append(result)
        return results


class DaskRunner(Runner):
    """Every file at once on Dask, with a plain ``distributed`` client: no Prefect server needed."""

    def __init__(self, options: DaskOptions) -> None:
        self.options = options

    def describe(self) -> str:
        return self.options.describe()

    def run(self, inputs: InputSet, job: BatchJob, on_rows: RowsScored | None = None) -> list[FileResult]:
        pieces = self.plan(inputs, job)
        results: list[FileResult] = []
        joiner: Joiner | None = None
        with self.submit(pieces, inputs, job) as futures:
            for piece, future in zip(pieces, futures, strict=True):
                outcome = _outcome(piece.source, future.result, on_rows)
                if piece.whole:
                    results.append(outcome)
                    continue
                if piece.part == 0:
                    joiner = Joiner(inputs, job.output, job.run_id, piece.source)
                assert joiner is not None  # a file's parts come in order, from its first
                if (joined := joiner.add(piece, outcome)) is not None:  # written while later parts score
                    results.append(joined)
        return results

    def plan(self, inputs: InputSet, job: BatchJob) -> list[Piece]:
        """Files whole, or large ones cut into up to two row ranges per worker (with a shadow, files stay whole)."""
        if not job.split_rows or job.shadow_version is not None:
            return [Piece(str(source)) for source in inputs.files]
        return plan(
            inputs, output=job.output, model_version=job.model_version, workers=self.workers(),
            min_rows=job.split_rows, force=job.force,
        )  # fmt: skip

    def workers(self) -> int:
        """How many workers the files go to: the LocalCluster's, or what the existing scheduler has now."""
        if not self.options.address:
            return self.options.workers or os.cpu_count() or 1
        from distributed import Client

        with Client(self.options.address, timeout=30) as client:
            return max(1, len(client.scheduler_info().get("workers", {})))

    @contextmanager
    def submit(self, pieces: list[Piece], inputs: InputSet, job: BatchJob) -> Iterator[Sequence[Any]]:
        """Futures of ``score_piece_on_worker`` for every piece (each with ``.result()``)."""
        from distributed import Client, LocalCluster

        with ExitStack() as stack:
            cluster = self.options.address or stack.enter_context(LocalCluster(**self.options.cluster_kwargs()))
            client = stack.enter_context(Client(cluster))
            yield client.map(score_piece_on_worker, pieces, inputs=inputs, job=job, pure=False, retries=2)


def _outcome(source: str, result: Callable[[], FileResult], on_rows: RowsScored | None) -> FileResult:
    try:
        outcome = result()
    except Exception as exc:  # noqa: BLE001 - recorded per file; the run reports it and fails at the end
        outcome = FileResult(source, "failed", error=f"{type(exc).__name__}: {exc}")
    if on_rows is not None:
        on_rows(outcome.rows)  # the file's chunks were scored on a worker: counted when it is done
    return outcome


def score_file_on_worker(source: str, inputs: InputSet, job: BatchJob) -> FileResult:
    """Score one file on a Dask worker with the run's model version, on one BLAS/OpenMP thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        scorer = _scorer(job.registry, job.model_version, job.options)
        shadow, shadow_error = None, None
        if job.shadow_version is not None:
            try:
                shadow = _scorer(job.registry, job.shadow_version, job.options)
            except ScoringError as exc:  # the challenger must never stop the champion's file
                shadow_error = f"challenger v{job.shadow_version}: {type(exc).__name__}: {exc}"
        result = score_file(
            Location(source),
            inputs,
            Location(job.output),
            scorer,
            chunk_size=job.chunk_size,
            run_id=job.run_id,
            force=job.force,
            shadow=shadow,
        )
    if shadow_error is not None:
        result.shadow_error = shadow_error
    return result


def score_piece_on_worker(piece: Piece, inputs: InputSet, job: BatchJob) -> FileResult:
    """Score a whole file (``score_file_on_worker``) or one row range of it into its parts."""
    if piece.whole:
        return score_file_on_worker(piece.source, inputs, job)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        scorer = _scorer(job.registry, job.model_version, job.options)
        return score_piece(piece, inputs, job.output, scorer, chunk_size=job.chunk_size, run_id=job.run_id)


@functools.lru_cache(maxsize=4)
def _scorer(registry: str, version: int, options: ScorerOptions) -> Scorer:
    """One load (hash-checked) per worker process and version; versions are immutable, so it stays valid."""
    return Scorer.from_registry(Registry(registry), version, options=options)
