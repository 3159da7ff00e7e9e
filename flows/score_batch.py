"""The ``score-batch`` Prefect flow: one task per Parquet file, a summary artifact at the end.

``scorepipe score`` calls the same flow function without a Prefect server (``score_batch.fn``);
outside a flow run the per-file task runs as a plain function and no artifact is published.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.runtime import flow_run

from flows.batch import BatchSummary, run_batch, score_file
from scoring import Registry, Scorer, ScoringError, Settings

score_file_task = task(
    score_file,
    name="score-file",
    task_run_name="score {source.name}",
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
) -> dict:
    """Score Parquet partitions with a registered model; write results, rejects and quarantine."""
    settings = Settings()
    in_run = FlowRunContext.get() is not None
    scorer = Scorer.from_registry(Registry(settings.registry_dir), model)
    summary = run_batch(
        input,
        output,
        scorer,
        chunk_size=chunk_size or settings.chunk_size,
        run_id=str(flow_run.id) if in_run else None,
        force=force,
        score_one_file=score_file_task if in_run else score_file,
    )
    if in_run:
        _publish(summary)
    failed = [f for f in summary.files if f.status == "failed"]
    if failed:
        details = "; ".join(f"{f.source}: {f.error}" for f in failed)
        raise BatchRunFailed(f"{len(failed)} of {len(summary.files)} input files failed: {details}")
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
            f"Quarantined files: `{Path(summary.output) / '_quarantine'}`\n"
        ),
        description="Totals and output paths of score-batch",
    )
