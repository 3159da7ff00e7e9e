"""The ``performance-report`` Prefect flow: the model's quality on last night's rows whose labels arrived.

It publishes the per-version table as a markdown artifact and ends in a Failed state named
``Performance degraded`` when any version fell below the quality gate or too far below training.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import flow
from prefect.states import State

from flows.report_state import report_state
from flows.settings import load_flow_settings
from performance.report import build_performance_report
from performance.summary import PerformanceSummary
from scoring.sources import existing_folder_or_file, latest_partition


@flow(name="performance-report", log_prints=True)
def performance_report(
    scored: str = "data/scored",
    labels: str = "data/labels",
    output: str | None = None,
    latest_only: bool = True,
    id_column: str | None = None,
    since_days: float | None = None,
) -> State:
    """Join labels to scored rows and judge each model version; Failed('Performance degraded') if one fell."""
    settings = load_flow_settings()
    folder = existing_folder_or_file(scored, "scored data")
    existing_folder_or_file(labels, "labels")
    target = latest_partition(folder) if latest_only and folder.is_dir() else folder
    since = datetime.now(UTC) - timedelta(days=since_days) if since_days else None
    out = output or settings.reports_dir
    summary = build_performance_report(str(target), labels, out, settings, id_column=id_column, since=since)
    failed_as = "Performance degraded" if summary.degraded else None
    return report_state(settings, "performance-report", summary, markdown(summary), failed_as=failed_as)


def markdown(summary: PerformanceSummary) -> str:
    rows = "\n".join(
        f"| v{v.model_version} | {v.rows:,} | {_f(v.roc_auc)} | {_f(v.training_roc_auc)} | {v.precision:.3f} | "
        f"{v.recall:.3f} | {v.f1:.3f} | {v.log_loss:.4f} | {'**degraded**' if v.degraded else 'ok'} |"
        for v in summary.versions
    )
    return (
        f"## Performance report: {summary.verdict}\n\n{summary.headline()}\n\n"
        f"Scored: `{summary.scored}`; labels: `{summary.labels}` ({summary.labels_rejected:,} set aside, "
        f"{summary.unknown_label_ids:,} matching no scored row).\n\n"
        f"HTML report: `{summary.html}`  \nJSON summary: `{summary.json_path}`\n\n"
        f"| version | rows | ROC AUC | training | precision | recall | F1 | log loss | verdict |\n"
        f"|---|---|---|---|---|---|---|---|---|\n{rows}\n"
    )


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
