"""Where a finished report's figures go: the Pushgateway (for alerts) and MLflow (beside the model).

The drift and performance flows and CLI commands all end by calling ``publish_report``. Each
destination is optional and neither can fail the report: the HTML and JSON are already written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from monitoring.push import push_run_figures
from monitoring.settings import MonitoringSettings
from scoring import Registry, ScoringError


class Report(Protocol):
    """What a drift or performance summary offers to be published."""

    html: str
    json_path: str

    @property
    def verdict(self) -> str: ...

    def figures(self) -> Mapping[str, tuple[float, str]]: ...

    def judged_version(self) -> int: ...


def publish_report(settings: MonitoringSettings, job: str, summary: Report) -> str | None:
    """Push the report's figures and log it to MLflow when configured; the MLflow run id, if logged."""
    push_run_figures(settings.pushgateway_url, job=job, figures=summary.figures())
    from integrations.mlflow.client import tracking_uri
    from integrations.mlflow.tracking import ReportRun, log_report

    if tracking_uri(settings) is None:
        return None
    version = summary.judged_version()
    try:
        info = Registry(settings.registry_dir).bundle_info(version)
    except ScoringError:
        info = None  # the report still goes to MLflow, only without the model's lineage
    files = [summary.html, summary.json_path]
    run = ReportRun(job, Path(summary.html).stem, summary.verdict, summary.figures(), files, version, info)
    return log_report(settings, run)
