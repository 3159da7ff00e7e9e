"""A whole batch run: resolve the models once, pick a runner, score every file, push the figures.

``flows.score_batch`` (the Prefect flow) and ``scorepipe score`` both call ``score_batch``; the
flow passes runners that make each file a Prefect task run, the CLI the plain ones.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from batch.results import BatchSummary
from batch.runners import BatchJob, DaskOptions, DaskRunner, RowsScored, Runner, SequentialRunner
from batch.settings import BatchSettings
from integrations.stores import model_stores
from monitoring.push import push_run_figures
from scoring import Registry, Scorer, ScoringError
from scoring.model_source import resolve_once
from scoring.scorer import ALL_VERIFIED, ScorerOptions
from scoring.sources import discover_inputs
from scoring.storage import Location

# How a caller turns "where to run" (None: this process) and the loaded models into a runner.
RunnerFactory = Callable[[DaskOptions | None, Scorer, Scorer | None], Runner]
Say = Callable[[str], None]


@dataclass(frozen=True)
class BatchRequest:
    """What to score with what: the parameters of the score-batch flow and of ``scorepipe score``."""

    input: str
    output: str
    model: str = "champion"
    chunk_size: int | None = None
    force: bool = False
    shadow: str | None = None
    workers: int | None = None
    dask_address: str | None = None


def plain_runner(options: DaskOptions | None, scorer: Scorer, shadow: Scorer | None) -> Runner:
    """In this process when ``options`` is None, else on Dask with a plain client."""
    return SequentialRunner(scorer, shadow) if options is None else DaskRunner(options)


def run_batch(
    input: str | Location,
    output: str | Location,
    scorer: Scorer,
    *,
    chunk_size: int,
    run_id: str | None = None,
    force: bool = False,
    shadow: Scorer | None = None,
    runner: Runner | None = None,
    registry: str = "",
    on_rows: RowsScored | None = None,
    scorer_options: ScorerOptions = ALL_VERIFIED,
    split_rows: int = 0,
) -> BatchSummary:
    """Score every input file with ``scorer`` on ``runner`` (default: one after another here)."""
    inputs = discover_inputs(input)
    summary = BatchSummary(
        run_id=run_id or f"local-{uuid.uuid4()}",
        model_version=scorer.version,
        input=str(input),
        output=str(output),
        shadow_version=shadow.version if shadow is not None else None,
        mlflow=scorer.bundle.info.get("mlflow"),
    )
    job = BatchJob(
        output=str(output),
        chunk_size=chunk_size,
        run_id=summary.run_id,
        force=force,
        registry=registry,
        model_version=scorer.version,
        shadow_version=summary.shadow_version,
        options=scorer_options,
        split_rows=split_rows,
    )
    summary.files = (runner or SequentialRunner(scorer, shadow)).run(inputs, job, on_rows)
    return summary


def score_batch(
    settings: BatchSettings,
    request: BatchRequest,
    *,
    run_id: str | None = None,
    make_runner: RunnerFactory = plain_runner,
    on_rows: RowsScored | None = None,
    say: Say = print,
    warn: Say = print,
) -> BatchSummary:
    """Score ``request.input`` with the model it names, resolved once at the start; push the figures.

    A promotion during the run applies to the next run. A shadow that cannot be loaded is
    reported through ``warn`` and skipped: it never stops the champion's run.
    """
    started = time.monotonic()
    registry = Registry(settings.registry_dir)
    scorer_options = settings.scorer_options
    model = resolve_once(registry, request.model, settings, model_stores())  # an mlflow: model is imported (once) first
    scorer = Scorer.from_registry(registry, model, options=scorer_options)
    if origin := scorer.bundle.info.get("mlflow"):
        say(f"model v{scorer.version} is MLflow {origin.get('model_name')} v{origin.get('model_version')}")
    challenger = _challenger(registry, request.shadow, settings, warn) if request.shadow else None
    options = dask_options(settings, request.workers, request.dask_address)
    runner = make_runner(options, scorer, challenger)
    if options is not None:
        say(f"scoring files on a {runner.describe()}")
    summary = run_batch(
        request.input,
        request.output,
        scorer,
        chunk_size=request.chunk_size or settings.chunk_size,
        run_id=run_id,
        force=request.force,
        shadow=challenger,
        runner=runner,
        registry=str(settings.registry_dir),
        on_rows=on_rows,
        scorer_options=scorer_options,
        split_rows=settings.batch_split_rows,
    )
    push_run_figures(settings.pushgateway_url, job="score-batch", figures=summary.figures(time.monotonic() - started))
    return summary


def dask_options(settings: BatchSettings, workers: int | None, address: str | None) -> DaskOptions | None:
    """Where the files run: None for one after another in this process, else on Dask."""
    address = address or settings.dask_address
    workers = settings.batch_workers if workers is None else workers
    if workers < 0:
        raise ScoringError(f"workers must be 0 (one per core) or more, not {workers}")
    if address is None and workers == 1:
        return None
    return DaskOptions(workers=workers, address=address)


def _challenger(registry: Registry, ref: str, settings: BatchSettings, warn: Say) -> Scorer | None:
    try:
        version = resolve_once(registry, ref, settings, model_stores())  # a local alias or version, or an mlflow: model
        return Scorer.from_registry(registry, version, options=settings.scorer_options)
    except ScoringError as exc:
        warn(f"shadow {ref!r} skipped: {exc}")
        return None
