"""The ``drift-report`` Prefect flow: an Evidently report on last night's scored partition (local or ``s3://``).

It publishes the verdict as a markdown artifact (per-feature table and report paths) and ends in
a Failed state named ``Drift detected`` when drift is found, so drift is never a silent success.
"""

from __future__ import annotations

from prefect import flow
from prefect.states import State

from drift.report import build_report
from drift.summary import DriftSummary
from flows.report_state import report_state
from flows.settings import load_flow_settings
from scoring.sources import existing_folder_or_file, latest_partition


@flow(name="drift-report", log_prints=True)
def drift_report(
    current: str = "data/scored",
    output: str | None = None,
    model: str | None = None,
    latest_only: bool = True,
) -> State:
    """Compare scored data with the training reference; Failed('Drift detected') if it drifted."""
    settings = load_flow_settings()
    folder = existing_folder_or_file(current, "scored data")
    target = latest_partition(folder) if latest_only and folder.is_dir() else folder
    summary = build_report(str(target), output or settings.reports_dir, settings, model=model)
    failed_as = "Drift detected" if summary.drift_detected else None
    return report_state(settings, "drift-report", summary, markdown(summary), failed_as=failed_as)


def markdown(summary: DriftSummary) -> str:
    rows = "\n".join(
        f"| {c.name} | {c.method} | {c.shown_score} | {c.threshold:g} | {'**yes**' if c.drifted else 'no'} |"
        for c in [*summary.features, *summary.predictions]
    )
    return (
        f"## Drift report: {summary.verdict}\n\n{summary.headline()}\n\n"
        f"Current: `{summary.current}` ({summary.current_rows:,} of {summary.current_rows_total:,} rows); "
        f"reference: {summary.reference_rows:,} training rows.\n\n"
        f"HTML report: `{summary.html}`  \nJSON summary: `{summary.json_path}`\n\n"
        f"| column | test | score | threshold | drifted |\n|---|---|---|---|---|\n{rows}\n"
    )
