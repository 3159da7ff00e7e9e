"""Rendering for the terminal: every table and summary line the CLI and the demo print.

Renderers take the typed results (batch, drift, performance summaries) and print them; nothing
here computes a figure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from collections.abc import Iterable

    from batch.results import BatchSummary
    from drift.summary import DriftSummary
    from performance.summary import PerformanceSummary
    from scoring.canary import CanaryPlan
    from scoring.registry import VersionInfo
    from scoring.schema import FeatureSchema

console = Console()


def print_metrics(version: int, metrics: dict) -> None:
    table = Table(title=f"model v{version}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def print_outcomes(c: dict) -> None:
    console.print(
        f"challenger v{c['challenger_version']} vs champion v{c['champion_version']} "
        f"on {c['rows']:,} labelled rows: "
        f"ROC AUC {c['challenger_roc_auc']:.4f} vs {c['champion_roc_auc']:.4f}, difference {c['difference']:+.4f} "
        f"(95% CI {c['ci95_low']:+.4f} .. {c['ci95_high']:+.4f}): {c['better']}",
        soft_wrap=True,
    )


def print_versions(title: str, versions: Iterable[VersionInfo]) -> None:
    """The registry's versions: when, which aliases, ROC AUC, note."""
    table = Table(title=title)
    for column in ("version", "created", "aliases", "roc_auc", "note"):
        table.add_column(column)
    for info in versions:
        auc = info.metrics.get("roc_auc")
        table.add_row(
            f"v{info.version}", info.created_at, ", ".join(info.aliases), f"{auc:.4f}" if auc else "-", info.note
        )
    console.print(table)


def print_schema(schema: FeatureSchema) -> None:
    """A model's features: kind, nullability, the bounds it accepts and what training saw."""
    table = Table(title="feature schema")
    for column in ("feature", "kind", "nullable", "bounds", "observed / categories"):
        table.add_column(column)
    for f in schema.features:
        if f.kind == "numeric":
            bounds = f"[{_number(f.min_value)}, {_number(f.max_value)}]"
            seen = f"{_number(f.observed_min)} .. {_number(f.observed_max)}"
        else:
            bounds = "any" if f.allow_unknown else "known only"
            seen = ", ".join(f.categories)
        table.add_row(f.name, f.kind, str(f.nullable), bounds, seen)
    console.print(table)


def print_comparison(title: str, summaries: list[dict]) -> None:
    """Champion against challenger, per pair of versions: agreement and probability shift."""
    table = Table(title=title)
    for column in ("champion", "challenger", "rows compared", "label agreement", "mean |Δp|", "p95 |Δp|"):
        table.add_column(column, justify="right")
    for s in summaries:
        table.add_row(
            f"v{s['champion_version']}",
            f"v{s['challenger_version']}",
            f"{s['rows_compared']:,}",
            f"{s['label_agreement']:.4f}",
            f"{s['mean_abs_proba_diff']:.4f}",
            f"{s['p95_abs_proba_diff']:.3f}",
        )
    console.print(table)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def short_reason(error: str, limit: int = 100) -> str:
    """An error's first sentence, for a table cell: whole words, never cut mid-word; the full text is kept elsewhere."""
    first = error.strip().split(". ", 1)[0].rstrip(".")
    first = first + "." if first else first
    if len(first) <= limit:
        return first
    return first[: limit - 1].rsplit(" ", 1)[0] + "…"


def progress_bar(label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def print_summary(summary: BatchSummary) -> None:
    """A batch run: one row per file, then the totals and where the results are."""
    table = Table(title=f"score-batch with model v{summary.model_version}")
    for column in ("file", "status", "rows", "scored", "rejected", "output / error"):
        table.add_column(column, overflow="fold")
    for f in summary.files:
        name = f.source.rstrip("/").rsplit("/", 1)[-1]
        table.add_row(name, f.status, str(f.rows), str(f.scored), str(f.rejected), f.error or f.output or "")
    console.print(table)
    console.print(
        f"{summary.rows_scored:,} rows scored, {summary.rows_rejected:,} rejected "
        f"({summary.count('quarantined')} file(s) quarantined, {summary.count('skipped')} skipped, "
        f"{summary.count('failed')} failed); results in {summary.output}",
        soft_wrap=True,
    )


def print_drift(summary: DriftSummary) -> None:
    table = Table(title=f"drift of {summary.current} against model v{summary.model_version}'s training reference")
    for column in ("column", "test", "score", "threshold", "drifted"):
        table.add_column(column)
    for c in [*summary.features, *summary.predictions]:
        table.add_row(c.name, c.method, c.shown_score, f"{c.threshold:g}", "[red]yes[/]" if c.drifted else "no")
    console.print(table)
    colour = "red" if summary.drift_detected else "green"
    console.print(f"[bold {colour}]{summary.headline()}[/]", soft_wrap=True)
    console.print(f"report: {summary.html}\nsummary: {summary.json_path}", soft_wrap=True)


def print_performance(summary: PerformanceSummary) -> None:
    table = Table(title=f"model performance on {summary.labelled_rows:,} labelled rows of {summary.scored}")
    for column in ("model", "rows", "AUC", "train", "prec", "recall", "F1", "logloss", "verdict"):
        table.add_column(column, justify="right", no_wrap=True)
    for v in summary.versions:
        table.add_row(
            f"v{v.model_version}",
            f"{v.rows:,}",
            "-" if v.roc_auc is None else f"{v.roc_auc:.3f}",
            "-" if v.training_roc_auc is None else f"{v.training_roc_auc:.3f}",
            f"{v.precision:.2f}",
            f"{v.recall:.2f}",
            f"{v.f1:.2f}",
            f"{v.log_loss:.3f}",
            "[red]degraded[/]" if v.degraded else "ok",
        )
    console.print(table)
    colour = "red" if summary.degraded else "green"
    console.print(f"[bold {colour}]{summary.headline()}[/]", soft_wrap=True)
    for v in summary.versions:
        for reason in v.reasons:
            console.print(f"  v{v.model_version}: {reason}", soft_wrap=True)
    if summary.unknown_label_ids or summary.labels_rejected:
        console.print(
            f"labels: {summary.unknown_label_ids:,} ids matched no scored row "
            f"(e.g. {summary.unknown_label_examples[:3]}); {summary.labels_rejected:,} set aside"
            + (f" in {summary.rejected_labels_path}" if summary.rejected_labels_path else ""),
            soft_wrap=True,
        )
    if summary.estimated is not None:
        gap = summary.realized_vs_estimated_roc_auc
        console.print(
            f"estimated from probabilities alone (CBPE, {int(summary.estimated['rows']):,} scored rows): ROC AUC "
            f"{summary.estimated['roc_auc']:.4f}, F1 {summary.estimated['f1']:.3f}"
            + (f"; realized minus estimated ROC AUC {gap:+.4f}" if gap is not None else ""),
            soft_wrap=True,
        )
    if summary.challenger is not None:
        print_outcomes(summary.challenger)
    console.print(f"report: {summary.html}\nsummary: {summary.json_path}", soft_wrap=True)


def print_canary(plan: CanaryPlan) -> None:
    """A canary plan: versions, weight and step, state and the last reason."""
    table = Table(title=f"canary v{plan.canary} against champion v{plan.champion}")
    for column in ("state", "weight", "step", "failures", "started", "updated", "reason"):
        table.add_column(column)
    step = f"{plan.step + 1}/{len(plan.steps)} ({', '.join(f'{s:g}%' for s in plan.steps)})" if plan.steps else "A/B"
    table.add_row(
        plan.state,
        f"{plan.weight:g}%",
        step,
        f"{plan.failures}/{plan.failure_limit}",
        plan.started_at,
        plan.updated_at,
        plan.reason,
    )
    console.print(table)


def print_canary_decisions(decisions: list[dict]) -> None:
    """The gate's judgements: when, at which weight, the verdict and action, and each check's figure."""
    table = Table(title="decisions (the audit log)")
    for column in ("time", "weight", "verdict", "action", "checks"):
        table.add_column(column)
    for decision in decisions:
        shown = []
        for check in decision.get("checks", []):
            figure = check.get("figure")
            value = "-" if figure is None else f"{figure:.4g}"
            shown.append(f"{check['name']} {check['verdict']} ({value} vs {check.get('threshold')})")
        table.add_row(
            decision.get("time", ""),
            f"{decision.get('weight', 0):g}%",
            decision.get("verdict", ""),
            decision.get("action", ""),
            "\n".join(shown),
        )
    console.print(table)
