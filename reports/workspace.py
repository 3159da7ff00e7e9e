"""Reports over time: every drift and performance report is also a run in an Evidently workspace.

One project per model name, with a dashboard created once: the share of drifted features,
per-column drift scores, prediction drift, realized against estimated ROC AUC, label coverage and
the model version, night after night. Each run is stamped with the night it describes (the
``date=YYYY-MM-DD`` partition of the scored data), so backfilled nights land on their own dates,
and tagged with where the rows were scored (``batch``, ``stream``) and the model version.
``scorepipe ui`` serves the workspace with Evidently's own UI.

Figures scorepipe computes itself (label coverage, estimated ROC AUC) are stored as a one-row
dataset measured with Evidently's ``MeanValue``, so the stock UI plots them beside its own metrics.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from evidently import Report
from evidently.metrics import MeanValue
from evidently.sdk.models import PanelMetric
from evidently.sdk.panels import counter_panel, line_plot_panel, text_panel

from reports.settings import ReportSettings
from scoring import ScoringError
from scoring.layout import SOURCE_FILE  # the lineage column batch outputs carry
from scoring.storage import Where

log = logging.getLogger("scorepipe.workspace")

NIGHT = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
DESCRIPTION = "scorepipe drift and performance reports, one run per night and source"


def night_of(where: Where) -> datetime | None:
    """The night a report describes, from the last ``date=YYYY-MM-DD`` in its path (None: not partitioned)."""
    found = NIGHT.findall(str(where))
    return datetime.fromisoformat(found[-1]).replace(tzinfo=UTC) if found else None


def source_of(columns: list[str] | pd.Index) -> str:
    """Where the scored rows came from: batch outputs carry their source file, stream windows their event id."""
    return "batch" if SOURCE_FILE in columns else "stream"


def run_labels(where: Where, source: str, model_version: int, night: datetime | None = None) -> dict[str, Any]:
    """``Report.run`` keywords for a report on ``where``: its night, its source and version as tags and metadata."""
    return {
        "timestamp": night or night_of(where) or datetime.now(UTC),
        "tags": [source, f"v{model_version}"],
        "metadata": {"model_version": str(model_version), "source": source, "scored": str(where)},
    }


def nights_of(files: pd.Series) -> pd.Series:
    """The night of each row, from the ``date=`` partition of the file it was scored from (NaT: none)."""
    found = files.astype(str).str.extract(r"date=(\d{4}-\d{2}-\d{2})", expand=False)
    return pd.to_datetime(found, utc=True)


def model_name(info: Mapping[str, Any], settings: ReportSettings) -> str:
    """The project a model's reports go to: its MLflow name if it came from MLflow, else the served name."""
    return str((info.get("mlflow") or {}).get("model_name") or settings.serve_model_name)


def figures_snapshot(figures: Mapping[str, float], **labels: Any) -> Any:
    """The figures scorepipe computes itself as an Evidently run: a one-row dataset measured by ``MeanValue``."""
    row = pd.DataFrame({name: [float(value)] for name, value in figures.items()})
    return Report([MeanValue(column=name) for name in figures]).run(row, None, **labels)


class ReportWorkspace:
    """An Evidently workspace (a folder, or ``s3://bucket/prefix``) with one project per model name."""

    def __init__(self, where: str | Path) -> None:
        self.where = str(where)
        if not self.where.startswith("s3://"):  # on S3, Evidently writes through fsspec (s3fs)
            Path(self.where).mkdir(parents=True, exist_ok=True)
        self.workspace = _run_writer(self.where)

    def project(self, model_name: str) -> Any:
        """The project for ``model_name``, created with its dashboard the first time."""
        found = self.workspace.search_project(model_name)
        if found:
            return found[0]
        project = self.workspace.create_project(model_name, description=DESCRIPTION)
        for panel in dashboard_panels():
            project.dashboard.add_panel(panel)
        return project

    def add(self, model_name: str, *snapshots: Any) -> str:
        """Add runs to the model's project; the project's id."""
        project = self.project(model_name)
        for snapshot in snapshots:
            self.workspace.add_run(project.id, snapshot, include_data=False)
        return str(project.id)


def _run_writer(where: str) -> Any:
    """Evidently's local ``Workspace``, without the dataset manager its constructor builds.

    That manager reads every run stored so far, so opening the workspace grew with its history: 0.5 s
    after 10 nightly runs, 7.6 s after 120 (measured). scorepipe adds runs without their data
    (``include_data=False``), which needs only the workspace's state: projects, dashboards, runs.
    """
    from evidently.ui.storage.local.base import LocalState
    from evidently.ui.workspace import Workspace

    class RunWriter(Workspace):
        def __init__(self, path: str) -> None:  # Workspace.__init__ minus datasets, links and artifacts
            self.path = path
            self.state = LocalState(path)

    return RunWriter(where)


def add_runs(settings: ReportSettings, model_name: str, *snapshots: Any) -> str | None:
    """Add the runs to the settings' workspace; a workspace that fails is logged, never fails the report."""
    try:
        return ReportWorkspace(settings.workspace_dir).add(model_name, *snapshots)
    except (OSError, ValueError, ScoringError) as exc:
        log.warning("could not add the report to the Evidently workspace %s: %s", settings.workspace_dir, exc)
        return None


def _figure(legend: str, column: str) -> PanelMetric:
    """A figure of ``figures_snapshot`` on a panel: Evidently's MeanValue of its one-row column."""
    return PanelMetric(legend=legend, metric="MeanValue", metric_labels={"column": column})


def dashboard_panels() -> list[Any]:
    return [
        text_panel(title="scorepipe", description="Drift and performance of the model, one point per night and source"),
        counter_panel(
            title="Share of drifted features, last night",
            values=[_figure("share", "share_drifted_features")],
            size="half",
        ),
        counter_panel(
            title="Model version, last night",
            values=[_figure("version", "model_version")],
            size="half",
        ),
        line_plot_panel(
            title="Share of drifted features",
            values=[_figure("share of features", "share_drifted_features")],
        ),
        line_plot_panel(
            title="Drift score per column (features and predictions)",
            values=[PanelMetric(legend="drift score", metric="ValueDrift")],
        ),
        line_plot_panel(
            title="Prediction drift",
            values=[PanelMetric(legend="prediction", metric="ValueDrift", metric_labels={"column": "prediction"})],
            size="half",
        ),
        line_plot_panel(
            title="Label coverage",
            values=[_figure("coverage", "label_coverage")],
            size="half",
        ),
        line_plot_panel(
            title="ROC AUC: realized on labels, estimated from probabilities",
            values=[
                _figure("realized", "roc_auc"),
                _figure("estimated", "estimated_roc_auc"),
                _figure("training", "training_roc_auc"),
            ],
        ),
        line_plot_panel(
            title="Model version",
            values=[_figure("version", "model_version")],
        ),
    ]
