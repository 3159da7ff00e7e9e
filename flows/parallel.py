"""Score-batch files in parallel on Dask: a LocalCluster sized to the machine, or an existing cluster.

Only plain values cross to the workers: a file's path and a ``FileJob`` naming the registry and
the model *version* the run resolved (so a promotion during the run changes nothing). Each worker
loads that version from the registry once, with the usual hash check, and scores its files with
the same ``score_file`` as the sequential path, on one BLAS/OpenMP thread so that N workers use
N cores rather than N times as many threads.

Inside a flow run the files are Prefect task runs on prefect-dask's ``DaskTaskRunner`` (retries,
states, the run's logs); outside one (``scorepipe score --workers N``) the same function is mapped
with a plain ``distributed.Client`` on the same cluster settings, so no Prefect server is needed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from flows.batch import FileResult, score_file
from scoring import Registry, Scorer, ScoringError
from scoring.sources import InputSet
from scoring.storage import Location


@dataclass(frozen=True)
class FileJob:
    """What every file of one run shares, as plain values a worker can receive."""

    registry: str
    model_version: int
    shadow_version: int | None
    output: str
    chunk_size: int
    run_id: str
    force: bool


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


def score_file_on_worker(source: str, inputs: InputSet, job: FileJob) -> FileResult:
    """Score one file on a Dask worker with the run's model version, on one BLAS/OpenMP thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        scorer = _scorer(job.registry, job.model_version)
        shadow, shadow_error = None, None
        if job.shadow_version is not None:
            try:
                shadow = _scorer(job.registry, job.shadow_version)
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


@functools.lru_cache(maxsize=4)
def _scorer(registry: str, version: int) -> Scorer:
    """One load (hash-checked) per worker process and version; versions are immutable, so it stays valid."""
    return Scorer.from_registry(Registry(registry), version)


def score_files_on_dask(
    inputs: InputSet,
    job: FileJob,
    options: DaskOptions,
    *,
    in_flow_run: bool,
    on_result: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Score every file of ``inputs`` on Dask; a file that fails (after its retries) is reported, not raised."""
    sources = [str(p) for p in inputs.files]
    run = _on_task_runner if in_flow_run else _on_client
    with run(sources, inputs, job, options) as futures:
        return [_outcome(source, future.result, on_result) for source, future in zip(sources, futures, strict=True)]


def _outcome(
    source: str, result: Callable[[], FileResult], on_result: Callable[[FileResult], None] | None
) -> FileResult:
    try:
        outcome = result()
    except Exception as exc:  # noqa: BLE001 - recorded per file; the run reports it and fails at the end
        outcome = FileResult(source, "failed", error=f"{type(exc).__name__}: {exc}")
    if on_result is not None:
        on_result(outcome)
    return outcome


@contextmanager
def _on_task_runner(sources: list[str], inputs: InputSet, job: FileJob, options: DaskOptions) -> Iterator[list[Any]]:
    """Prefect task runs on prefect-dask's DaskTaskRunner: retries, states and logs as on the sequential path."""
    from prefect.utilities.annotations import unmapped
    from prefect_dask import DaskTaskRunner

    from flows.score_batch import score_file_on_worker_task

    runner_kwargs: dict[str, Any] = (
        {"address": options.address} if options.address else {"cluster_kwargs": options.cluster_kwargs()}
    )
    with DaskTaskRunner(**runner_kwargs) as runner:
        parameters = {"source": sources, "inputs": unmapped(inputs), "job": unmapped(job)}
        yield runner.map(score_file_on_worker_task, parameters)


@contextmanager
def _on_client(sources: list[str], inputs: InputSet, job: FileJob, options: DaskOptions) -> Iterator[list[Any]]:
    """The same function mapped with a plain Dask client: no Prefect server needed (``scorepipe score``)."""
    from distributed import Client, LocalCluster

    with ExitStack() as stack:
        cluster = options.address or stack.enter_context(LocalCluster(**options.cluster_kwargs()))
        client = stack.enter_context(Client(cluster))
        yield client.map(score_file_on_worker, sources, inputs=inputs, job=job, pure=False, retries=2)
