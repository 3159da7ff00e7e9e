"""The machine-readable performance verdict (saved as JSON beside the HTML report)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class VersionPerformance(BaseModel):
    """One model version's quality on the labelled rows it scored, against its training figures."""

    model_version: int
    rows: int
    roc_auc: float | None
    precision: float
    recall: float
    f1: float
    log_loss: float
    accuracy: float
    classes: list[str]
    confusion_matrix: list[list[int]]
    training_roc_auc: float | None
    roc_auc_drop: float | None
    degraded: bool
    reasons: list[str]


class PerformanceSummary(BaseModel):
    """Everything a reviewer or a flow needs to act on one performance report."""

    verdict: Literal["degraded", "ok"]
    versions: list[VersionPerformance]
    scored_rows: int
    labelled_rows: int
    label_coverage: float
    label_rows_read: int
    labels_rejected: int
    label_repeats_dropped: int
    unknown_label_ids: int
    unknown_label_examples: list[str]
    scored_repeats_dropped: int
    estimated: dict[str, float] | None = None  # from probabilities alone, every scored row (binary models)
    realized_vs_estimated_roc_auc: float | None = None  # realized minus estimated, most-scored version
    challenger: dict[str, Any] | None = None  # champion vs shadow challenger on the same labelled rows
    min_roc_auc: float
    max_roc_auc_drop: float
    scored: str
    labels: str
    html: str
    json_path: str
    rejected_labels_path: str | None
    generated_at: str
    seconds: float
    workspace_project: str | None = None  # the Evidently project this run was added to

    @property
    def degraded(self) -> bool:
        return self.verdict == "degraded"

    def judged_version(self) -> int:
        """The version this report is mostly about: the one that scored the most labelled rows."""
        return max(self.versions, key=lambda v: v.rows).model_version

    def figures(self) -> dict[str, tuple[float, str]]:
        """The most-scored version's figures as Pushgateway gauges: name -> (value, help)."""
        main = next(v for v in self.versions if v.model_version == self.judged_version())
        return {
            "scorepipe_performance_roc_auc": (main.roc_auc or 0.0, "ROC AUC on labelled rows, most-scored version"),
            "scorepipe_performance_roc_auc_drop": (main.roc_auc_drop or 0.0, "Training ROC AUC minus live ROC AUC"),
            "scorepipe_performance_f1": (main.f1, "F1 on labelled rows, most-scored version"),
            "scorepipe_performance_label_coverage_ratio": (self.label_coverage, "Share of scored rows with a label"),
            "scorepipe_performance_labelled_rows": (self.labelled_rows, "Scored rows joined to a label"),
            "scorepipe_performance_degraded": (float(self.degraded), "1 when a version is degraded"),
            "scorepipe_performance_model_version": (main.model_version, "The most-scored version"),
        }

    def headline(self) -> str:
        parts = []
        for v in self.versions:
            auc = "n/a (one class only)" if v.roc_auc is None else f"{v.roc_auc:.4f}"
            training = f" (training {v.training_roc_auc:.4f})" if v.training_roc_auc is not None else ""
            parts.append(f"v{v.model_version}: ROC AUC {auc}{training}")
        what = "DEGRADED" if self.degraded else "ok"
        return (
            f"{what}: {'; '.join(parts)}; {self.labelled_rows:,} labelled of {self.scored_rows:,} scored rows "
            f"(coverage {self.label_coverage:.1%})"
        )
