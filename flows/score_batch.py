"""The ``score-batch`` Prefect flow: the batch engine with a task run per file and a summary artifact.

Everything but Prefect lives in ``batch/``: this module chooses Prefect's runners (a task run per
file, in this process or on prefect-dask's ``DaskTaskRunner``), logs, and publishes artifacts.
``scorepipe score`` runs the same ``batch.run.score_batch`` without a Prefect server.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.runtime import flow_run

from batch.engine import score_file
from batch.pieces import Piece
from batch.results import BatchSummary
from batch.run import BatchRequest, plain_runner
from batch.run import score_batch as run_score_batch
from batch.runners import BatchJob, DaskOptions, DaskRunner, Runner, SequentialRunner, score_piece_on_worker
from flows.settings import load_flow_settings
from scoring import Scorer
from scoring.layout import QUARANTINE_DIR, REJECTED_DIR, SHADOW_DIR
from scoring.sources import InputSet

# prefect's overloads of task() do not cover cache_policy=NO_CACHE
score_file_task = task(  # type: ignore[call-overload]
    score_file,
    name="score-file",
    task_run_name="score {source.name}",
    retries=2,
    retry_delay_seconds=2,
    cache_policy=NO_CACHE,
)

score_piece_on_worker_task = task(  # type: ignore[call-overload]
    score_piece_on_worker,
    name="score-file",
    task_run_name="score {piece.label}",
    retries=2,
    retry_delay_seconds=2,
    cache_policy=NO_CACHE,
)


class PrefectDaskRunner(DaskRunner):
    """Files as Prefect task runs on prefect-dask's DaskTaskRunner: retries, states and logs per file."""

    @contextmanager
    def submit(self, pieces: list[Piece], inputs: InputSet, job: BatchJob) -> Iterator[Sequence[Any]]:
        from prefect.utilities.annotations import unmapped
        from prefect_dask import DaskTaskRunner

        options = self.options
        kwargs: dict[str, Any] = (
            {"address": options.address} if options.address else {"cluster_kwargs": options.cluster_kwargs()}
        )
        with DaskTaskRunner(**kwargs) as runner:
            parameters = {"piece": pieces, "inputs": unmapped(inputs), "job": unmapped(job)}
            yield runner.map(score_piece_on_worker_task, parameters)


def prefect_runner(options: DaskOptions | None, scorer: Scorer, shadow: Scorer | None) -> Runner:
    """A task run per file: here one after another, or on Dask."""
    if options is None:
        return SequentialRunner(scorer, shadow, score_one=score_file_task)
    return PrefectDaskRunner(options)


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
    Every path may be ``s3://bucket/prefix``.
    """
    in_run = FlowRunContext.get() is not None
    request = BatchRequest(input, output, model, chunk_size, force, shadow, workers, dask_address)
    if in_run:
        logger = get_run_logger()
        summary = run_score_batch(
            load_flow_settings(), request, run_id=str(flow_run.id), make_runner=prefect_runner,
            say=logger.info, warn=logger.warning,
        )  # fmt: skip
        _publish(summary)
    else:
        summary = run_score_batch(load_flow_settings(), request, make_runner=plain_runner)
    summary.raise_for_failures()
    return summary.to_dict()


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
            "file": f.source.rsplit("/", 1)[-1],
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
    output = summary.output.rstrip("/")
    create_markdown_artifact(
        key="score-batch-summary",
        markdown=(
            f"## score-batch: model v{summary.model_version}\n\n"
            f"| rows scored | rows rejected | files scored | skipped | quarantined | failed |\n"
            f"|---|---|---|---|---|---|\n"
            f"| {summary.rows_scored} | {summary.rows_rejected} | {summary.count('scored')} | "
            f"{summary.count('skipped')} | {summary.count('quarantined')} | {summary.count('failed')} |\n\n"
            f"Input: `{summary.input}`  \nOutput: `{output}`  \n"
            f"Rejected rows: `{output}/{REJECTED_DIR}`  \n"
            f"Quarantined files: `{output}/{QUARANTINE_DIR}`\n" + _shadow_markdown(summary)
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
        f"Outputs: `{summary.output.rstrip('/')}/{SHADOW_DIR}`  \n"
        f"Rows compared: {figures['rows_compared']:,}; label agreement {figures['label_agreement']:.4f}; "
        f"mean |Δp| {figures['mean_abs_proba_diff']:.4f}; p95 |Δp| {figures['p95_abs_proba_diff']:.3f}\n"
    )
