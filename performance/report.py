"""Model performance on labelled rows: scikit-learn figures per version, an Evidently classification report.

The verdict is ``degraded`` when a version's ROC AUC is below the quality gate (``min_roc_auc``) or
more than ``performance_max_auc_drop`` below the ROC AUC it had on its training holdout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Report
from evidently.presets import ClassificationPreset

from performance.challenger import compare_on_outcomes
from performance.estimate import estimated_metrics
from performance.evaluate import measure
from performance.join import NIGHT_COLUMN, Joined, id_column_of, join_labels
from performance.labels import LABEL, read_labels
from performance.settings import PerformanceSettings
from performance.summary import PerformanceSummary, VersionPerformance
from reports.html import save_html
from reports.workspace import add_runs, figures_snapshot, model_name, run_labels
from scoring import Registry, SourceError
from scoring.compare import find_shadow
from scoring.layout import EVENT_ID
from scoring.scorer import MODEL_VERSION, PREDICTION, PROBA_PREFIX
from scoring.sources import discover_inputs
from scoring.storage import Location, Where, as_location


def build_performance_report(
    scored: Where,
    labels: Where,
    out_dir: str | Path | Location,
    settings: PerformanceSettings,
    *,
    id_column: str | None = None,
    label_column: str = LABEL,
    since: datetime | None = None,
    name: str | None = None,
) -> PerformanceSummary:
    """Join ``labels`` to ``scored``, measure every model version, write HTML, JSON and set-aside labels."""
    started = time.perf_counter()
    registry = Registry(settings.registry_dir)
    classes = _classes(scored, registry)
    id_col = id_column or id_column_of(scored)
    label_set = read_labels(labels, id_column=id_col, label_column=label_column, classes=classes)
    positive = f"{PROBA_PREFIX}{classes[-1]}" if len(classes) == 2 else None
    joined = join_labels(scored, label_set, id_column=id_col, since=since, collect_proba=positive)
    if joined.rows.empty:
        raise SourceError(
            f"no scored row under {scored} has a label in {labels} (joined on {id_col}; "
            f"{len(label_set.labels):,} usable labels, e.g. {joined.unknown_examples[:3]})"
        )
    performances = [
        _measure(group, version, classes, registry, settings) for version, group in _by_version(joined.rows)
    ]
    out_dir = as_location(out_dir)
    out_dir.mkdir()
    stem = f"performance-{name or as_location(scored).name}"
    html, json_path = out_dir / f"{stem}.html", out_dir / f"{stem}.json"
    dominant = int(joined.rows[MODEL_VERSION].mode().iloc[0])
    source = "stream" if id_col == EVENT_ID else "batch"
    shown = joined.rows[joined.rows[MODEL_VERSION] == dominant]
    snapshot = _classification_html(
        shown,
        classes,
        html,
        sample_rows=settings.drift_sample_rows,
        seed=settings.seed,
        labels=run_labels(scored, source, dominant),
        **_heading(scored, labels, dominant, len(shown), len(performances), joined.scored_rows, label_set.rows_read,
                   settings.drift_sample_rows),
    )  # fmt: skip
    estimated = estimated_metrics(joined.proba) if joined.proba is not None and len(joined.proba) else None
    main = max(performances, key=lambda p: p.rows)
    gap = main.roc_auc - estimated["roc_auc"] if estimated and main.roc_auc is not None else None
    challenger = _against_challenger(_shadow_of(scored), label_set, joined.rows, id_col, classes, since, settings.seed)
    rejected_path = None
    if len(label_set.rejected):
        rejected_path = out_dir / f"{stem}-rejected-labels.parquet"
        rejected_path.write_bytes(label_set.rejected.astype(str).to_parquet(index=False))
    summary = PerformanceSummary(
        verdict="degraded" if any(p.degraded for p in performances) else "ok",
        versions=performances,
        scored_rows=joined.scored_rows,
        labelled_rows=len(joined.rows),
        label_coverage=len(joined.rows) / max(joined.scored_rows - joined.scored_repeats_dropped, 1),
        label_rows_read=label_set.rows_read,
        labels_rejected=len(label_set.rejected),
        label_repeats_dropped=label_set.repeats_dropped,
        unknown_label_ids=joined.unknown_label_ids,
        unknown_label_examples=joined.unknown_examples,
        scored_repeats_dropped=joined.scored_repeats_dropped,
        estimated=estimated,
        realized_vs_estimated_roc_auc=gap,
        challenger=challenger,
        min_roc_auc=settings.min_roc_auc,
        max_roc_auc_drop=settings.performance_max_auc_drop,
        scored=str(scored),
        labels=str(labels),
        html=str(html),
        json_path=str(json_path),
        rejected_labels_path=str(rejected_path) if rejected_path else None,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - started, 3),
    )
    nightly = _nightly_figure_runs(joined, classes, registry, settings, scored, source)
    runs = nightly or [snapshot, *_figure_runs(summary, scored, source)]
    name = model_name(registry.bundle_info(dominant), settings)
    summary.workspace_project = add_runs(settings, name, *runs)
    json_path.write_bytes(summary.model_dump_json(indent=2).encode())
    return summary


def _nightly_figure_runs(
    joined: Joined,
    classes: list[Any],
    registry: Registry,
    settings: PerformanceSettings,
    scored: Where,
    source: str,
) -> list[Any]:
    """One run per night and version when the labelled rows span several ``date=`` partitions (a backfill).

    Each night's realized ROC AUC, label coverage and probability-based estimate come from that
    night's rows alone, so the trend shows the nights, not their mix. Empty for one night or none.
    """
    if len(joined.scored_by_night) < 2 or NIGHT_COLUMN not in joined.rows.columns:
        return []
    runs = []
    for night, rows in joined.rows.groupby(NIGHT_COLUMN, sort=True):
        when = datetime.fromisoformat(str(night)).replace(tzinfo=UTC)
        estimate = None
        if joined.proba is not None and joined.proba_nights is not None:
            night_proba = joined.proba[joined.proba_nights == night]
            estimate = estimated_metrics(night_proba) if len(night_proba) else None
        main = int(rows[MODEL_VERSION].mode().iloc[0])
        coverage = len(rows) / max(joined.scored_by_night[str(night)], 1)
        for version, group in _by_version(rows):
            measured = _measure(group, version, classes, registry, settings)
            estimated = estimate["roc_auc"] if estimate and version == main else None
            labels = run_labels(scored, source, version, night=when)
            runs.append(_figures_run(measured, coverage=coverage, estimated_roc_auc=estimated, labels=labels))
    return runs


def _figure_runs(summary: PerformanceSummary, scored: Where, source: str) -> list[Any]:
    """One run of scorepipe's own figures per version judged: realized, estimated and training ROC AUC, coverage."""
    main = summary.judged_version()
    return [
        _figures_run(
            version,
            coverage=summary.label_coverage,
            estimated_roc_auc=(summary.estimated or {}).get("roc_auc") if version.model_version == main else None,
            labels=run_labels(scored, source, version.model_version),
        )
        for version in summary.versions
    ]


def _figures_run(
    measured: VersionPerformance, *, coverage: float, estimated_roc_auc: float | None, labels: dict[str, Any]
) -> Any:
    """One version's figures as a workspace run: realized, estimated and training ROC AUC, coverage, rows."""
    figures = {
        "model_version": measured.model_version,
        "roc_auc": measured.roc_auc,
        "training_roc_auc": measured.training_roc_auc,
        "label_coverage": coverage,
        "labelled_rows": measured.rows,
        "estimated_roc_auc": estimated_roc_auc,
    }
    return figures_snapshot({k: float(v) for k, v in figures.items() if v is not None}, **labels)


def challenger_on_outcomes(
    scored: Where,
    labels: Where,
    settings: PerformanceSettings,
    *,
    shadow: Where | None = None,
    id_column: str | None = None,
    label_column: str = LABEL,
) -> dict[str, Any] | None:
    """Champion (``scored``) against its shadow challenger on the labels that arrived (``compare --labels``)."""
    registry = Registry(settings.registry_dir)
    classes = _classes(scored, registry)
    id_col = id_column or id_column_of(scored)
    label_set = read_labels(labels, id_column=id_col, label_column=label_column, classes=classes)
    champion = join_labels(scored, label_set, id_column=id_col)
    if champion.rows.empty:
        return None
    shadow_path = as_location(shadow) if shadow is not None else find_shadow(scored)
    return _against_challenger(shadow_path, label_set, champion.rows, id_col, classes, None, settings.seed)


def _against_challenger(
    shadow: Location | None,
    labels: Any,
    champion: pd.DataFrame,
    id_column: str,
    classes: list[Any],
    since: Any,
    seed: int,
) -> dict[str, Any] | None:
    """The shadow challenger (its outputs at ``shadow``, if any) judged beside the champion on the same labels."""
    if shadow is None:
        return None
    challenger = join_labels(shadow, labels, id_column=id_column, since=since)
    if challenger.rows.empty:
        return None
    return compare_on_outcomes(champion, challenger.rows, id_column=id_column, classes=classes, seed=seed)


def _shadow_of(scored: Where) -> Location | None:
    try:
        return find_shadow(scored)
    except SourceError:
        return None


def _measure(rows: pd.DataFrame, version: int, classes: list[Any], registry: Registry, settings: PerformanceSettings):
    """One version's figures and verdict, against the ROC AUC the registry kept from its training holdout."""
    return measure(
        rows,
        version,
        classes,
        training_roc_auc=registry.info(version).metrics.get("roc_auc"),
        min_roc_auc=settings.min_roc_auc,
        max_roc_auc_drop=settings.performance_max_auc_drop,
    )


def _heading(
    scored: Any, labels: Any, version: int, rows: int, versions: int, scored_rows: int, labels_read: int, sample: int
) -> dict[str, Any]:
    """The performance page's title and details: which model, which rows, which labels."""
    shown = f" (a fixed-seed sample of {sample:,} shown)" if rows > sample else ""
    others = f" ({versions - 1} other version(s) in these rows: see the JSON summary)" if versions > 1 else ""
    return {
        "title": f"Performance of model v{version} on {scored}, against the labels in {labels}",
        "details": [
            f"model version: v{version}{others}",
            f"labelled rows of v{version}: {rows:,}{shown}",
            f"scored rows read: {scored_rows:,}; labels read: {labels_read:,}",
            f"generated at {datetime.now(UTC).isoformat(timespec='seconds')}",
        ],
    }


def _classification_html(
    rows: pd.DataFrame,
    classes: list[Any],
    path: Location,
    *,
    sample_rows: int,
    seed: int,
    labels: dict[str, Any],
    title: str,
    details: list[str],
) -> Any:
    """Evidently's classification preset on the labelled rows (a fixed-seed sample), saved self-contained."""
    if len(rows) > sample_rows:
        rows = rows.sample(sample_rows, random_state=seed)
    names = [str(c) for c in classes]
    frame = pd.DataFrame({"target": rows[LABEL].astype(str), "prediction": rows[PREDICTION].astype(str)})
    if len(names) == 2:
        frame["proba"] = rows[f"{PROBA_PREFIX}{names[-1]}"].to_numpy(dtype=float)
        task: Any = BinaryClassification(
            target="target", prediction_labels="prediction", prediction_probas="proba", pos_label=names[-1]
        )
    else:
        for name in names:
            frame[name] = rows[f"{PROBA_PREFIX}{name}"].to_numpy(dtype=float)
        task = MulticlassClassification(target="target", prediction_labels="prediction", prediction_probas=names)
    definition = DataDefinition(
        classification=[task],
        categorical_columns=["target", "prediction"],
        numerical_columns=[c for c in frame.columns if c not in ("target", "prediction")],
    )
    snapshot = Report([ClassificationPreset()]).run(
        Dataset.from_pandas(frame, data_definition=definition), None, **labels
    )
    save_html(snapshot, path, title=title, details=details)
    return snapshot


def _classes(scored: Where, registry: Registry) -> list[Any]:
    """The model's classes, from a version that scored the data (versions of one model share them)."""
    first = discover_inputs(scored).files[0]
    table = pq.read_table(first.path, columns=[MODEL_VERSION], filesystem=first.fs)
    versions = [v for v in table.column(0).to_pylist() if v is not None]
    return list(registry.load(max(versions) if versions else "champion").bundle.classes)


def _by_version(rows: pd.DataFrame) -> Iterator[tuple[int, pd.DataFrame]]:
    """The rows of each model version, in version order."""
    for version, group in rows.groupby(MODEL_VERSION, sort=True):
        yield int(str(version)), group
