"""Drift reports' settings: the Evidently tests, their thresholds, the rows sampled."""

from __future__ import annotations

from pydantic import Field

from reports.settings import ReportSettings


class DriftSettings(ReportSettings):
    """Which drift tests run and when a dataset counts as drifted."""

    # Distances, not p-values: a p-value test flags trivial differences once windows are large, and
    # Evidently would otherwise switch methods with the data's size.
    drift_share: float = Field(
        default=0.3, gt=0.0, le=1.0, description="Share of drifted features at which a dataset counts as drifted."
    )
    drift_num_method: str = Field(default="wasserstein", description="Evidently drift test for numeric columns.")
    drift_cat_method: str = Field(default="jensenshannon", description="Evidently drift test for categorical columns.")
    drift_num_threshold: float = Field(default=0.1, description="Numeric test threshold (distance above = drift).")
    drift_cat_threshold: float = Field(default=0.1, description="Categorical test threshold (distance above = drift).")
