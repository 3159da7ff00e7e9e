"""Drift reports' settings: the Evidently tests, their thresholds, the rows sampled."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reports.settings import ReportSettings


class DriftSettings(ReportSettings):
    """Which drift tests run and when a dataset counts as drifted."""

    # Distances, not p-values: a p-value test flags trivial differences once windows are large, and
    # Evidently would otherwise switch methods with the data's size.
    drift_share: float = Field(
        default=0.3, gt=0.0, le=1.0, description="Share of drifted features at which a dataset counts as drifted."
    )
    drift_num_method: str = Field(
        default="wasserstein",
        description="Drift test for numeric columns: wasserstein, ks, psi, jensenshannon or kl_div (computed by "
        "scorepipe, equal to Evidently's); any other Evidently method is left to Evidently for every column.",
    )
    drift_cat_method: str = Field(
        default="jensenshannon",
        description="Drift test for categorical columns: jensenshannon, psi, kl_div or chisquare (computed by "
        "scorepipe); any other Evidently method is left to Evidently for every column.",
    )
    drift_num_threshold: float = Field(default=0.1, description="Numeric test threshold (distance above = drift).")
    drift_cat_threshold: float = Field(default=0.1, description="Categorical test threshold (distance above = drift).")
    drift_report_columns: Literal["all", "drifted", "top"] = Field(
        default="top",
        description="Features the HTML report renders (every feature's figure is in the JSON): all, the drifted "
        "ones, or the top SCOREPIPE_DRIFT_REPORT_TOP by drift.",
    )
    drift_report_top: int = Field(default=30, gt=0, description="Features rendered when drift_report_columns=top.")
    drift_block_columns: int = Field(
        default=64, gt=0, description="Numeric columns read and sorted together (memory: sample rows x this x 8 B)."
    )
