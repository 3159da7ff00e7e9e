"""Performance reports' settings: when live quality counts as degraded."""

from __future__ import annotations

from pydantic import Field

from reports.settings import ReportSettings


class PerformanceSettings(ReportSettings):
    """How far live ROC AUC may fall below training's."""

    performance_max_auc_drop: float = Field(
        default=0.03, ge=0.0, le=1.0, description="Degraded when live ROC AUC is this far below training's."
    )
