"""The ``score-batch`` Prefect flow: one task per Parquet file, a summary artifact at the end.

``scorepipe score`` calls the same flow function without a Prefect server (``score_batch.fn``);
outside a flow run the per-file task runs as a plain function and no artifact is published.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.runtime import flow_run

from flows.batch import ROWS_SCORED, SHADOW_DIR, BatchSummary, FileResult, run_batch, score_file
from flows.parallel import DaskOptions, FileJob, score_file_on_worker, score_files_on_dask
from monitoring.push import push_run_figures
from scoring import Registry, Scorer, ScoringError, Settings
from scoring.sources import InputSet

score_file_task = task(
    score_file,
    name="score-file",
    task_run_name="score {source.name}",
    retries=2,
    retry_delay_seconds=2,
    cache_policy=NO_CACHE,
)

score_file_on_worker_task = task(
    score_file_on_worker,
    name="score-file",
    task_run_name="score {source}",
    retries=2,
    retry_delay_seconds=2,
    cache_policy=NO_CACHE,
)


class BatchRunFailed(ScoringError):
    """Raised by the flow when some input files failed even after retries (others were scored)."""


@flow(name="score-batch", log_prints=True)
def score_batch(
    input: str = "data/incoming",
    output: str = "data/scored",
    model: str = "champion",
    chunk_size: int | None = None,
    force: bool = False,
    shadow: str | None = None,
    workers: int | None = None,
    dask_address: str | None = None,
) -> dict:
    """Score Parquet partitions with a registered model; write results, rejects and quarantine.

    ``shadow`` (an alias or version, e.g. ``challenger``) scores the same rows into ``_shadow/``
    beside the output; only the champion's outputs are the product. The model is resolved once,
    at the start: a promotion during the run applies to the next run.

    ``workers`` (default: the ``batch_workers`` setting) scores files in parallel on a Dask
    LocalCluster of that many single-threaded workers (0: one per core; 1: one after another in
    this process); ``dask_address`` (or the ``dask_address`` setting) uses an existing cluster.
    """
    started = time.monotonic()
    settings = Settings()
    in_run = FlowRunContext.get() is not None
    registry = Registry(settings.registry_dir)
    scorer = Scorer.from_registry(registry, model)
    challenger = _challenger(registry, shadow, in_run) if shadow else None
    run_id = str(flow_run.id) if in_run else f"local-{uuid.uuid4()}"
    options = _dask_options(settings, workers, dask_address)
    score_all = None
    if options is not None:
        _say(f"scoring files on a {options.describe()}", in_run)
        job = FileJob(
            registry=str(settings.registry_dir),
            model_version=scorer.version,
            shadow_version=challenger.version if challenger is not None else None,
            output=output,
            chunk_size=chunk_size or settings.chunk_size,
            run_id=run_id,
            force=force,
        )

        def score_all(inputs: InputSet) -> list[FileResult]:
            return score_files_on_dask(inputs, job, options, in_flow_run=in_run, on_result=_progress)

    summary = run_batch(
        input,
        output,
        scorer,
        chunk_size=chunk_size or settings.chunk_size,
        run_id=run_id,
        force=force,
        shadow=challenger,
        score_one_file=score_file_task if in_run else score_file,
        score_all=score_all,
    )
    if in_run:
        _publish(summary)
    _push(settings, summary, time.monotonic() - started)
    failed = [f for f in summary.files if f.status == "failed"]
    if failed:
        details = "; ".join(f"{f.source}: {f.error}" for f in failed)
        raise BatchRunFailed(f"{len(failed)} of {len(summary.files)} input files failed: {details}")
    return summary.to_dict()


def _dask_options(settings: Settings, workers: int | None, address: str | None) -> DaskOptions | None:
    """Where the files run: None for one after another in this process, else on Dask."""
    address = address or settings.dask_address
    workers = settings.batch_workers if workers is None else workers
    if workers < 0:
        raise ScoringError(f"workers must be 0 (one per core) or more, not {workers}")
    if address is None and workers == 1:
        return None
    return DaskOptions(workers=workers, address=address)


def _progress(result: FileResult) -> None:
    """Tell an interactive caller (the CLI's bar) of a file done on Dask: its chunks were counted there."""
    if (progress := ROWS_SCORED.get()) is not None:
        progress(result.rows)


def _challenger(registry: Registry, ref: str, in_run: bool) -> Scorer | None:
    """The shadow model, or None (reported) if it cannot be loaded: it must never stop the champion's run."""
    try:
        return Scorer.from_registry(registry, ref)
    except ScoringError as exc:
        _say(f"shadow {ref!r} skipped: {exc}", in_run, warning=True)
        return None


def _say(message: str, in_run: bool, *, warning: bool = False) -> None:
    if in_run:
        logger = get_run_logger()
        (logger.warning if warning else logger.info)(message)
    else:
        print(message)


def _push(settings: Settings, summary: BatchSummary, seconds: float) -> None:
    figures = {
        "scorepipe_batch_rows_scored": (summary.rows_scored, "Rows scored by the last score-batch run"),
        "scorepipe_batch_rows_rejected": (summary.rows_rejected, "Rows rejected by validation in the last run"),
        "scorepipe_batch_files_scored": (summary.count("scored"), "Files scored in the last run"),
        "scorepipe_batch_files_skipped": (summary.count("skipped"), "Files already current in the last run"),
        "scorepipe_batch_files_quarantined": (summary.count("quarantined"), "Files quarantined in the last run"),
        "scorepipe_batch_files_failed": (summary.count("failed"), "Files failed after retries in the last run"),
        "scorepipe_batch_duration_seconds": (seconds, "Wall time of the last score-batch run"),
        "scorepipe_batch_model_version": (summary.model_version, "Model version of the last run"),
    }
    agreement = summary.agreement()
    if agreement is not None and agreement.rows:
        figures["scorepipe_batch_shadow_label_agreement_ratio"] = (
            agreement.label_agreement or 0.0,
            "Champion/challenger label agreement in the last run",
        )
        figures["scorepipe_batch_shadow_p95_abs_proba_diff"] = (
            agreement.quantile(0.95) or 0.0,
            "p95 absolute difference in the positive-class probability in the last run",
        )
    push_run_figures(settings.pushgateway_url, job="score-batch", figures=figures)


def _publish(summary: BatchSummary) -> None:
    logger = get_run_logger()
    logger.info(
        "model v%s: %d rows scored, %d rejected; files: %d scored, %d skipped, %d quarantined, %d failed",
        summary.model_version,
        summary.rows_scored,
        summary.rows_rejected,
        summary.count("scored"),
        summary.count("skipped"),
        summary.count("quarantined"),
        summary.count("failed"),
    )
    rows = [
        {
            "file": Path(f.source).name,
            "status": f.status,
            "rows": f.rows,
            "scored": f.scored,
            "rejected": f.rejected,
            "output": f.output or "",
            "error": f.error or "",
        }
        for f in summary.files
    ]
    create_table_artifact(key="score-batch-files", table=rows, description="Per-file results of score-batch")
    create_markdown_artifact(
        key="score-batch-summary",
        markdown=(
            f"## score-batch: model v{summary.model_version}\n\n"
            f"| rows scored | rows rejected | files scored | skipped | quarantined | failed |\n"
            f"|---|---|---|---|---|---|\n"
            f"| {summary.rows_scored} | {summary.rows_rejected} | {summary.count('scored')} | "
            f"{summary.count('skipped')} | {summary.count('quarantined')} | {summary.count('failed')} |\n\n"
            f"Input: `{summary.input}`  \nOutput: `{summary.output}`  \n"
            f"Rejected rows: `{Path(summary.output) / '_rejected'}`  \n"
            f"Quarantined files: `{Path(summary.output) / '_quarantine'}`\n" + _shadow_markdown(summary)
        ),
        description="Totals and output paths of score-batch",
    )


def _shadow_markdown(summary: BatchSummary) -> str:
    agreement = summary.agreement()
    if summary.shadow_version is None or agreement is None:
        return ""
    figures = agreement.summary()
    return (
        f"\n### Shadow: challenger v{summary.shadow_version}\n\n"
        f"Outputs: `{Path(summary.output) / SHADOW_DIR}`  \n"
        f"Rows compared: {figures['rows_compared']:,}; label agreement {figures['label_agreement']:.4f}; "
        f"mean |Δp| {figures['mean_abs_proba_diff']:.4f}; p95 |Δp| {figures['p95_abs_proba_diff']:.3f}\n"
    )
