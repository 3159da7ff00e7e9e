"""Drift reports' settings: when a dataset counts as drifted, the columns rendered, memory per column group."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reports.settings import ReportSettings
from scoring.settings import DriftTestSettings


class DriftSettings(ReportSettings, DriftTestSettings):
    """When a dataset counts as drifted, which columns a report renders (the tests are ``DriftTestSettings``)."""

    drift_share: float = Field(
        default=0.3, gt=0.0, le=1.0, description="Share of drifted features at which a dataset counts as drifted."
    )
    drift_report_columns: Literal["all", "drifted", "top"] = Field(
        default="top",
        description="Features the HTML report renders (every feature's figure is in the JSON): all, the drifted "
        "ones, or the top SCOREPIPE_DRIFT_REPORT_TOP by drift.",
    )
    # Evidently takes about 1.7 s per rendered column at 300k current rows: 10 keeps a wide report in seconds.
    drift_report_top: int = Field(default=10, gt=0, description="Features rendered when drift_report_columns=top.")
    drift_block_columns: int = Field(
        default=64, gt=0, description="Numeric columns read and sorted together (memory: sample rows x this x 8 B)."
    )
