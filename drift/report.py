"""Evidently drift reports: per-feature data drift, prediction drift, and a data summary.

Every column's statistic is computed by ``scoring.drift_stats`` against the model's reference
profile (the same figure Evidently computes, in a fraction of the time), and goes into the
``DriftSummary`` JSON. Evidently renders the HTML report over the columns a reader can take in (all,
the drifted ones, or the top ``k`` by drift, as configured and said on the page) plus the model's
outputs, and for those columns its figures are checked against scorepipe's: a report whose two
figures disagree is refused rather than published. A drift method scorepipe does not compute
itself is left to Evidently for every column.

The HTML is self-contained (Evidently 0.7 inlines its scripts; we check that no script or
stylesheet is fetched from elsewhere).
"""

from __future__ import annotations

import dataclasses
import json
import math
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

from drift.current import CurrentSample
from drift.data import cached_reference_outputs, dominant_version
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
from scoring.drift_reference import drift_profile, output_columns
from scoring.drift_stats import CATEGORICAL_METHODS, NUMERIC_METHODS, ColumnStat, block_stats, column_stat
from scoring.profile import ReferenceProfile, reference_features
from scoring.scorer import MODEL_VERSION, PREDICTION
from scoring.storage import Location, as_location

SHARE_FIGURE = "share_drifted_features"  # the workspace's trend: scorepipe's share over every feature
AGREEMENT = 1e-9  # relative: scorepipe's figure and Evidently's for a rendered column


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
    sample = CurrentSample.plan(current, sample_rows=settings.drift_sample_rows, seed=settings.seed, since=since)
    available = sample.columns
    versions = sample.read([MODEL_VERSION]) if MODEL_VERSION in available else pd.DataFrame()
    ref = model if model is not None else dominant_version(versions) or "champion"
    loaded = registry.load(ref)
    bundle = loaded.bundle
    schema = bundle.schema
    features = [n for n in schema.names if n in available]
    missing = sorted(set(schema.names) - set(features))
    if missing:
        raise ReportError(f"{current} lacks feature columns {', '.join(missing)}: is it scorepipe output?")
    predicted = cached_reference_outputs(registry, loaded.version, bundle, settings.cache_dir / "drift")
    outputs = output_columns(bundle.classes, available)
    profile = drift_profile(bundle, predicted)
    numeric, categorical = set(profile.numeric_names), set(profile.categorical_names)

    fast = settings.drift_num_method in NUMERIC_METHODS and settings.drift_cat_method in CATEGORICAL_METHODS
    computed = _statistics(sample, profile, features, numeric, settings) if fast else {}
    rendered = _rendered(features, computed, settings) if fast else features
    columns = [*rendered, *outputs]
    definition = DataDefinition(
        numerical_columns=[c for c in columns if c in numeric],
        categorical_columns=[c for c in columns if c in categorical],
    )
    frame = sample.read([*columns, *([SOURCE_FILE] if SOURCE_FILE in available else [])])
    current_frame = _as_labels(frame[columns])
    reference_rows = reference_features(bundle.reference, schema)[rendered]
    reference_frame = _as_labels(pd.concat([reference_rows, predicted[outputs]], axis=1))
    report = _report(rendered, outputs, settings)
    labels = run_labels(current, source_of(frame.columns), loaded.version)
    snapshot = report.run(
        Dataset.from_pandas(current_frame, data_definition=definition),
        Dataset.from_pandas(reference_frame, data_definition=definition),
        **labels,
    )
    judged = {c.name: c for c in _column_verdicts(json.loads(snapshot.json()), numeric)}
    unjudged = [c for c in columns if c not in judged]
    if unjudged:
        raise ReportError(f"Evidently returned no drift test for {', '.join(unjudged)}")
    if fast:
        computed = _agree(computed, judged)
    # scorepipe's figures for every feature (the same whichever are rendered), Evidently's for the outputs
    by_name = {**judged, **{n: _as_column(s, n in numeric) for n, s in computed.items()}}
    feature_results = [by_name[n] for n in features]

    out_dir = as_location(out_dir)
    out_dir.mkdir()
    stem = f"drift-{_slug(name or as_location(current).name)}"
    html = out_dir / f"{stem}.html"
    json_path = out_dir / f"{stem}.json"
    nights = (
        sorted(nights_of(frame[SOURCE_FILE]).dropna().dt.strftime("%Y-%m-%d").unique()) if SOURCE_FILE in frame else []
    )
    drifted = [c.name for c in feature_results if c.drifted]
    share = len(drifted) / len(feature_results)
    title, details = drift_heading(
        current, loaded.version, sampled=sample.rows, total=sample.window_rows, reference=profile.rows,
        nights=nights, rendered=_rendering_note(rendered, feature_results, settings) if fast else "",
    )  # fmt: skip
    if fast and len(rendered) < len(features):
        details.insert(-1, (
            f"dataset drift, over every feature: {len(drifted)} of {len(features)} drifted (share {share:.2f}, "
            f"threshold {settings.drift_share:.2f}); the table's own dataset test counts only the features shown"
        ))  # fmt: skip
    save_html(snapshot, html, title=title, details=details)
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
        rendered_features=rendered,
        model_version=loaded.version,
        reference_rows=profile.rows,
        current_rows=sample.rows,
        current_rows_total=sample.window_rows,
        current=str(current),
        html=str(html),
        json_path=str(json_path),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - started, 3),
    )
    nightly = _nightly_shares(sample, frame, profile, features, numeric, settings) if fast else {}
    runs = _nightly_runs(
        report, frame, current_frame, reference_frame, definition, current, loaded.version, features, nightly
    )
    if not runs:
        runs = [snapshot, figures_snapshot({"model_version": loaded.version, SHARE_FIGURE: share}, **labels)]
    summary.workspace_project = add_runs(settings, model_name(bundle.info, settings), *runs)
    json_path.write_bytes(summary.model_dump_json(indent=2).encode())  # whole or not at all, also on S3
    return summary


def _statistics(
    sample: CurrentSample, profile: ReferenceProfile, features: list[str], numeric: set[str], settings: DriftSettings
) -> dict[str, ColumnStat]:
    """Every feature's statistic against the profile, numeric columns a block at a time."""
    methods = settings.drift_methods()
    stats: dict[str, ColumnStat] = {}
    numeric_features = [f for f in features if f in numeric]
    for names, block in sample.numeric_blocks(numeric_features, settings.drift_block_columns):
        stats.update((s.column, s) for s in block_stats(names, block, profile, methods))
    for name in (f for f in features if f not in numeric):
        stats[name] = column_stat(name, sample.read([name])[name].to_numpy(dtype=object), profile, methods)
    return stats


def _rendered(features: list[str], stats: dict[str, ColumnStat], settings: DriftSettings) -> list[str]:
    """The features Evidently renders, in schema order: all, the drifted ones, or the top k by drift."""
    renderable = [f for f in features if stats[f].score is not None]  # Evidently refuses an empty column
    if settings.drift_report_columns == "all":
        return renderable
    if settings.drift_report_columns == "drifted":
        return [f for f in renderable if stats[f].drifted]
    top = set(sorted(renderable, key=lambda f: stats[f].strength, reverse=True)[: settings.drift_report_top])
    return [f for f in renderable if f in top]


def _rendering_note(rendered: list[str], features: list[ColumnDrift], settings: DriftSettings) -> str:
    if len(rendered) == len(features):
        return f"columns shown: all {len(features)} features and the model's outputs"
    how = "the drifted ones" if settings.drift_report_columns == "drifted" else "the strongest drift first"
    return (
        f"columns shown: {len(rendered)} of {len(features)} features ({how}) and the model's outputs; "
        "every feature's figure is in the JSON summary beside this page"
    )


def _report(rendered: list[str], outputs: list[str], settings: DriftSettings) -> Report:
    metrics: list[Any] = []
    if rendered:
        metrics.append(
            DataDriftPreset(
                columns=rendered,
                drift_share=settings.drift_share,
                num_method=settings.drift_num_method,
                cat_method=settings.drift_cat_method,
                num_threshold=settings.drift_num_threshold,
                cat_threshold=settings.drift_cat_threshold,
            )
        )
    metrics += [
        *[
            ValueDrift(column=c, method=settings.drift_num_method, threshold=settings.drift_num_threshold)
            for c in outputs[:-1]
        ],
        ValueDrift(column=PREDICTION, method=settings.drift_cat_method, threshold=settings.drift_cat_threshold),
        DataSummaryPreset(columns=[*rendered, *outputs]),
    ]
    return Report(metrics, include_tests=True)


def _agree(computed: dict[str, ColumnStat], judged: dict[str, ColumnDrift]) -> dict[str, ColumnStat]:
    """Refuse a report in which scorepipe's figure for a rendered column is not Evidently's.

    Figures equal to 1e-9 may still fall on two sides of a threshold they sit on: Evidently's
    verdict, the one the page shows, is kept.
    """
    agreed = dict(computed)
    for name, ours in computed.items():
        theirs = judged.get(name)
        if theirs is None or ours.score is None or theirs.score is None:
            continue
        close = math.isclose(ours.score, theirs.score, rel_tol=AGREEMENT, abs_tol=AGREEMENT * 1e-3)
        on_threshold = math.isclose(ours.score, ours.threshold, rel_tol=AGREEMENT, abs_tol=AGREEMENT * 1e-3)
        if close and ours.drifted != theirs.drifted and on_threshold:
            agreed[name] = dataclasses.replace(ours, drifted=theirs.drifted)
        elif not close or ours.drifted != theirs.drifted:
            raise ReportError(
                f"drift of {name!r} by {ours.method}: scorepipe computed {ours.score!r} (drifted: {ours.drifted}), "
                f"Evidently {theirs.score!r} (drifted: {theirs.drifted}); the report is not published"
            )
    return agreed


def _as_column(stat: ColumnStat, numeric: bool) -> ColumnDrift:
    return ColumnDrift(
        name=stat.column,
        kind="numeric" if numeric else "categorical",
        method=stat.method,
        score=stat.score,
        threshold=stat.threshold,
        drifted=stat.drifted,
        **({"note": stat.note} if stat.note else {}),
    )


def _nightly_shares(
    sample: CurrentSample,
    frame: pd.DataFrame,
    profile: ReferenceProfile,
    features: list[str],
    numeric: set[str],
    settings: DriftSettings,
) -> dict[str, float]:
    """Each night's share of drifted features over every feature, when the rows span several nights.

    Nights are those ``_nightly_runs`` groups by (the ``date=`` partition each row was scored from).
    """
    if SOURCE_FILE not in frame.columns:
        return {}
    nights = nights_of(frame[SOURCE_FILE])
    if nights.nunique() < 2:
        return {}
    shares = {}
    for night in sorted(nights.dropna().unique()):
        stats = _statistics(sample.where((nights == night).to_numpy()), profile, features, numeric, settings)
        shares[pd.Timestamp(night).strftime("%Y-%m-%d")] = sum(s.drifted for s in stats.values()) / len(stats)
    return shares


def _nightly_runs(
    report: Report,
    frame: pd.DataFrame,
    current: pd.DataFrame,
    reference: pd.DataFrame,
    definition: DataDefinition,
    where: str | Path,
    version: int,
    features: list[str],
    shares: dict[str, float],
) -> list[Any]:
    """One workspace run per night when the scored rows span several ``date=`` partitions (a backfill).

    The HTML and JSON judge all the rows together; the workspace plots a trend, so each night gets
    its own run, dated by it, with that night's share of drifted features over every feature (from
    ``shares``, or from Evidently's own verdicts when it judged every feature itself). Empty when the
    rows come from one night or none.
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
        run = report.run(Dataset.from_pandas(rows, data_definition=definition), reference_data, **labels)
        share = shares.get(night.strftime("%Y-%m-%d"))
        if share is None:
            judged = [c for c in _column_verdicts(json.loads(run.json()), set()) if c.name in features]
            share = sum(c.drifted for c in judged) / max(len(judged), 1)
        runs += [run, figures_snapshot({"model_version": version, SHARE_FIGURE: share}, **labels)]
    return runs


def _as_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """Class labels are categories even when they are integers: compared as text (a missing label stays missing)."""
    labels = frame[PREDICTION]
    return frame.assign(**{PREDICTION: labels.astype(str).where(labels.notna())})


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
    current: str | Path,
    version: int,
    *,
    sampled: int,
    total: int,
    reference: int,
    nights: Sequence[str],
    rendered: str = "",
) -> tuple[str, list[str]]:
    """The drift report's title and details: what was compared with what, on how many rows."""
    title = f"Drift of {current} against model v{version}'s training reference"
    details = [
        f"model version: v{version}",
        f"night(s): {', '.join(nights) if nights else 'not partitioned by date'}",
        f"current rows: {sampled:,} compared" + (f" (a fixed-seed sample of {total:,})" if total > sampled else ""),
        f"reference rows: {reference:,} (the training reference, scored by v{version})",
        *([rendered] if rendered else []),
        f"generated at {datetime.now(UTC).isoformat(timespec='seconds')}",
    ]
    return title, details


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9=._-]+", "_", text).strip("_") or "current"
