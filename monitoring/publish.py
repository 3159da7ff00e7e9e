"""Where a finished report's figures go: the Pushgateway (for alerts) and MLflow (beside the model).

The drift and performance flows and CLI commands all end by calling ``publish_report``. Each
destination is optional and neither can fail the report: the HTML and JSON are already written.
"""

from __future__ import annotations

from pathlib import Path

from drift.summary import DriftSummary
from monitoring.push import push_run_figures
from performance.summary import PerformanceSummary
from scoring import Registry, ScoringError, Settings


def publish_report(settings: Settings, job: str, summary: DriftSummary | PerformanceSummary) -> str | None:
    """Push the report's figures and log it to MLflow when configured; the MLflow run id, if logged."""
    push_run_figures(settings.pushgateway_url, job=job, figures=summary.figures())
    from scoring.mlflow_runs import log_report, tracking_uri

    if tracking_uri(settings) is None:
        return None
    version = judged_version(summary)
    try:
        model = Registry(settings.registry_dir).load(version).bundle
    except ScoringError:
        model = None  # the report still goes to MLflow, only without the model's lineage
    return log_report(
        settings,
        job=job,
        figures=summary.figures(),
        files=[summary.html, summary.json_path],
        verdict=summary.verdict,
        model=model,
        model_version=version,
        name=Path(summary.html).stem,
    )


def judged_version(summary: DriftSummary | PerformanceSummary) -> int:
    """The version a report is about: the drift report's model, or the most-scored version judged."""
    if isinstance(summary, DriftSummary):
        return summary.model_version
    return max(summary.versions, key=lambda v: v.rows).model_version
