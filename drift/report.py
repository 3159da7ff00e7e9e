"""Evidently drift reports: per-feature data drift, prediction drift, and a data summary.

The report goes to a self-contained HTML file (Evidently 0.7 inlines its scripts; we check that no
script or stylesheet is fetched from elsewhere) and a ``DriftSummary`` JSON beside it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset, DataSummaryPreset

from drift.data import dominant_version, prediction_columns, sample_current, scored_reference
from drift.settings import DriftSettings
from drift.summary import ColumnDrift, DriftSummary
from reports.html import ReportError, save_html
from reports.workspace import (
    SOURCE_FILE,
    add_runs,
    figures_snapshot,
    model_name,
    nights_of,
    run_labels,
    source_of,
)
from scoring import Registry
from scoring.scorer import PREDICTION
from scoring.storage import Location, as_location


def build_report(
    current: str | Path,
    out_dir: str | Path | Location,
    settings: DriftSettings,
    *,
    model: str | int | None = None,
    since: datetime | None = None,
    name: str | None = None,
) -> DriftSummary:
    """Compare ``current`` scored data with the model's training reference; write HTML and JSON."""
    started = time.perf_counter()
    registry = Registry(settings.registry_dir)
    frame, window_rows = sample_current(
        current, sample_rows=settings.drift_sample_rows, seed=settings.seed, since=since
    )
    ref = model if model is not None else dominant_version(frame) or "champion"
    loaded = registry.load(ref)
    bundle = loaded.bundle
    reference = scored_reference(registry, loaded.version, bundle, settings.cache_dir / "drift")
    schema = bundle.schema
    features = [n for n in schema.names if n in frame.columns]
    missing = sorted(set(schema.names) - set(features))
    if missing:
        raise ReportError(f"{current} lacks feature columns {', '.join(missing)}: is it scorepipe output?")
    outputs = [*prediction_columns(bundle.classes, list(frame.columns)), PREDICTION]
    columns = [*features, *outputs]
    numeric = [f.name for f in schema.numeric] + outputs[:-1]
    categorical = [f.name for f in schema.categorical] + [PREDICTION]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    current_frame = _as_labels(frame[columns])
    reference_frame = _as_labels(reference[columns])
    report = Report(
        [
            DataDriftPreset(
                columns=features,
                drift_share=settings.drift_share,
                num_method=settings.drift_num_method,
                cat_method=settings.drift_cat_method,
                num_threshold=settings.drift_num_threshold,
                cat_threshold=settings.drift_cat_threshold,
            ),
            *[
                ValueDrift(column=c, method=settings.drift_num_method, threshold=settings.drift_num_threshold)
                for c in outputs[:-1]
            ],
            ValueDrift(column=PREDICTION, method=settings.drift_cat_method, threshold=settings.drift_cat_threshold),
            DataSummaryPreset(columns=columns),
        ],
        include_tests=True,
    )
    labels = run_labels(current, source_of(frame.columns), loaded.version)
    snapshot = report.run(
        Dataset.from_pandas(current_frame, data_definition=definition),
        Dataset.from_pandas(reference_frame, data_definition=definition),
        **labels,
    )
    out_dir = as_location(out_dir)
    out_dir.mkdir()
    stem = f"drift-{_slug(name or as_location(current).name)}"
    html = out_dir / f"{stem}.html"
    json_path = out_dir / f"{stem}.json"
    nights = (
        sorted(nights_of(frame[SOURCE_FILE]).dropna().dt.strftime("%Y-%m-%d").unique()) if SOURCE_FILE in frame else []
    )
    title, details = drift_heading(
        current, loaded.version, sampled=len(current_frame), total=window_rows, reference=len(reference_frame),
        nights=nights,
    )  # fmt: skip
    save_html(snapshot, html, title=title, details=details)
    judged = _column_verdicts(json.loads(snapshot.json()), set(numeric))
    by_name = {c.name: c for c in judged}
    unjudged = [c for c in columns if c not in by_name]
    if unjudged:
        raise ReportError(f"Evidently returned no drift test for {', '.join(unjudged)}")
    feature_results = [by_name[n] for n in features]
    drifted = [c.name for c in feature_results if c.drifted]
    share = len(drifted) / len(feature_results)
    prediction_results = [by_name[n] for n in outputs]
    dataset_drift = share >= settings.drift_share
    prediction_drift = any(c.drifted for c in prediction_results)
    summary = DriftSummary(
        verdict="drift" if dataset_drift or prediction_drift else "no_drift",
        dataset_drift=dataset_drift,
        prediction_drift=prediction_drift,
        share_drifted_features=round(share, 4),
        drift_share_threshold=settings.drift_share,
        drifted_features=drifted,
        features=feature_results,
        predictions=prediction_results,
        model_version=loaded.version,
        reference_rows=len(reference_frame),
        current_rows=len(current_frame),
        current_rows_total=window_rows,
        current=str(current),
        html=str(html),
        json_path=str(json_path),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - started, 3),
    )
    runs = _nightly_runs(report, frame, current_frame, reference_frame, definition, current, loaded.version)
    if not runs:
        runs = [snapshot, figures_snapshot({"model_version": loaded.version}, **labels)]
    summary.workspace_project = add_runs(settings, model_name(bundle.info, settings), *runs)
    json_path.write_bytes(summary.model_dump_json(indent=2).encode())  # whole or not at all, also on S3
    return summary


def _nightly_runs(
    report: Report,
    frame: pd.DataFrame,
    current: pd.DataFrame,
    reference: pd.DataFrame,
    definition: DataDefinition,
    where: str | Path,
    version: int,
) -> list[Any]:
    """One workspace run per night when the scored rows span several ``date=`` partitions (a backfill).

    The HTML and JSON judge all the rows together; the workspace plots a trend, so each night gets
    its own run, dated by it. Empty when the rows come from one night or none.
    """
    if SOURCE_FILE not in frame.columns:
        return []
    nights = nights_of(frame[SOURCE_FILE])
    if nights.nunique() < 2:
        return []
    runs = []
    reference_data = Dataset.from_pandas(reference, data_definition=definition)
    for night, rows in current.groupby(nights, sort=True):
        labels = run_labels(where, "batch", version, night=night.to_pydatetime())
        runs.append(report.run(Dataset.from_pandas(rows, data_definition=definition), reference_data, **labels))
        runs.append(figures_snapshot({"model_version": version}, **labels))
    return runs


def _as_labels(frame):
    # Class labels are categories even when they are integers: compare them as such.
    return frame.assign(**{PREDICTION: frame[PREDICTION].astype(str)})


def _column_verdicts(result: dict[str, Any], numeric: set[str]) -> list[ColumnDrift]:
    """Per-column drift from the snapshot: the score from the metric, the verdict from its test."""
    statuses: dict[str, list[str]] = {}
    for test in result.get("tests", []):
        metric_id = (test.get("metric_config") or {}).get("metric_id")
        if metric_id:
            statuses.setdefault(metric_id, []).append(test.get("status", ""))
    columns = []
    for metric in result.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        tests = statuses.get(metric["id"], [])
        if not tests or "ERROR" in tests:
            raise ReportError(f"Evidently could not test drift of {config['column']!r}: {tests or 'no test'}")
        columns.append(
            ColumnDrift(
                name=config["column"],
                kind="numeric" if config["column"] in numeric else "categorical",
                method=config.get("method") or "default",
                score=float(metric["value"]),
                threshold=float(config.get("threshold") or 0.0),
                drifted=any(status in ("FAIL", "WARNING") for status in tests),
            )
        )
    return columns


def drift_heading(
    current: str | Path, version: int, *, sampled: int, total: int, reference: int, nights: Sequence[str]
) -> tuple[str, list[str]]:
    """The drift report's title and details: what was compared with what, on how many rows."""
    title = f"Drift of {current} against model v{version}'s training reference"
    details = [
        f"model version: v{version}",
        f"night(s): {', '.join(nights) if nights else 'not partitioned by date'}",
        f"current rows: {sampled:,} compared" + (f" (a fixed-seed sample of {total:,})" if total > sampled else ""),
        f"reference rows: {reference:,} (the training reference, scored by v{version})",
        f"generated at {datetime.now(UTC).isoformat(timespec='seconds')}",
    ]
    return title, details


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9=._-]+", "_", text).strip("_") or "current"
