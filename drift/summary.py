"""The machine-readable drift verdict that flows and the CLI act on (saved as JSON beside the HTML)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ColumnDrift(BaseModel):
    """One column's drift test: which test, its score (a distance or a p-value), its threshold, the verdict.

    A column with no value in the current data (or the reference) has no score, counts as drifted,
    and ``note`` says why.
    """

    name: str
    kind: Literal["numeric", "categorical"]
    method: str
    score: float | None
    threshold: float
    drifted: bool
    note: str = ""

    @property
    def shown_score(self) -> str:
        """The score for a table: four decimals, or why there is none."""
        return f"{self.score:.4f}" if self.score is not None else f"none: {self.note}"


class DriftSummary(BaseModel):
    """Everything a reviewer or a flow needs to act on one drift report.

    The dataset drifted when the share of drifted features reaches ``drift_share_threshold``; the
    verdict is ``drift`` when the dataset or the model's output (prediction drift) drifted.
    """

    verdict: Literal["drift", "no_drift"]
    dataset_drift: bool
    prediction_drift: bool
    share_drifted_features: float
    drift_share_threshold: float
    drifted_features: list[str]
    features: list[ColumnDrift]
    predictions: list[ColumnDrift]
    rendered_features: list[str] | None = None  # the features the HTML shows (every one is in ``features``)
    model_version: int
    reference_rows: int
    current_rows: int
    current_rows_total: int
    current: str
    html: str
    json_path: str
    generated_at: str
    seconds: float
    workspace_project: str | None = None  # the Evidently project this run was added to

    @property
    def drift_detected(self) -> bool:
        return self.verdict == "drift"

    def judged_version(self) -> int:
        """The model version this report is about."""
        return self.model_version

    def figures(self) -> dict[str, tuple[float, str]]:
        """The verdict as Pushgateway gauges, for alerting: name -> (value, help)."""
        return {
            "scorepipe_drift_share_drifted_features": (self.share_drifted_features, "Share of features that drifted"),
            "scorepipe_drift_drifted_features": (len(self.drifted_features), "Features that drifted"),
            "scorepipe_drift_detected": (float(self.drift_detected), "1 when the last drift report found drift"),
            "scorepipe_drift_prediction_drift": (float(self.prediction_drift), "1 when the predictions drifted"),
            "scorepipe_drift_current_rows": (self.current_rows, "Current rows compared with the reference"),
            "scorepipe_drift_model_version": (self.model_version, "Model version the report is against"),
        }

    def headline(self) -> str:
        what = "DRIFT" if self.drift_detected else "no drift"
        return (
            f"{what}: {len(self.drifted_features)}/{len(self.features)} features drifted "
            f"(share {self.share_drifted_features:.2f}, threshold {self.drift_share_threshold:.2f}); "
            f"prediction drift: {'yes' if self.prediction_drift else 'no'}; model v{self.model_version}"
        )
