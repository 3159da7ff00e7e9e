"""The canary gate's settings: where its evidence comes from, and each check's threshold."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from monitoring.settings import MonitoringSettings


class GateSettings(MonitoringSettings):
    """Thresholds and sources of ``scorepipe canary watch`` and the ``canary-analysis`` flow."""

    canary_prometheus_url: str | None = Field(
        default=None,
        description="Prometheus that scrapes the scorers: the gate's events and errors by arm come from it "
        "(else from SCOREPIPE_CANARY_METRICS_URLS).",
    )
    canary_metrics_urls: str | None = Field(
        default=None, description="The scorers' own /metrics URLs, comma-separated, when no Prometheus is named."
    )
    canary_min_events: int = Field(
        default=200, ge=1, description="Events the canary must have scored in an interval before it is judged."
    )
    canary_max_error_ratio_increase: float = Field(
        default=0.02,
        ge=0.0,
        description="Largest rise of the canary's dead-letter and rejection ratio over the champion's.",
    )
    canary_max_latency_ratio: float = Field(
        default=1.5,
        gt=1.0,
        description="Largest ratio of the canary's p95 scoring time to the champion's, same interval.",
    )
    canary_latency_slack_seconds: float = Field(
        default=0.005,
        ge=0.0,
        description="A slower p95 fails only when also this much slower than the champion's (in seconds).",
    )
    canary_min_latency_samples: int = Field(
        default=20, ge=1, description="Parts the canary must have scored in an interval before its p95 is judged."
    )
    canary_min_agreement: float = Field(
        default=0.9, ge=0.0, le=1.0, description="Least share of the canary's rows the champion predicts alike."
    )
    canary_max_probability_shift: float = Field(
        default=0.15,
        ge=0.0,
        le=1.0,
        description="Largest mean absolute difference of the canary's and the champion's probabilities, same rows.",
    )
    canary_max_estimated_auc_drop: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Largest fall of the canary's estimated ROC AUC (CBPE) below the champion's.",
    )
    canary_labels: str | None = Field(
        default=None,
        description="Label files (a folder or s3://...) the gate joins to the live window; none: no label check.",
    )
    canary_min_labels: int = Field(default=200, ge=2, description="Labelled rows each arm needs before it is judged.")
    canary_label_wait_seconds: float = Field(
        default=3600.0, gt=0, description="How long a step waits for enough labels before the policy decides."
    )
    canary_missing_labels: Literal["fail", "pass"] = Field(
        default="fail", description="When labels stay too few past the wait: fail the step, or pass it (said so)."
    )
    canary_lease_seconds: float = Field(
        default=30.0, gt=0, description="How long a controller's lease lasts unless renewed (one acts at a time)."
    )
