"""Reports' settings: the Evidently workspace every report joins, and where report files go."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from scoring.settings import CoreSettings


class ReportSettings(CoreSettings):
    """The workspace and the reports folder, shared by drift and performance reports."""

    evidently_workspace: str | None = Field(
        default=None,
        description="Evidently workspace every drift and performance report is added to (a folder or "
        "s3://bucket/prefix); default HOME/evidently. `scorepipe ui` serves it.",
    )

    drift_sample_rows: int = Field(
        default=50_000,
        gt=0,
        description="Current rows sampled (fixed seed) into a drift or performance report, whatever the window.",
    )

    @property
    def workspace_dir(self) -> str:
        """The Evidently workspace: a folder, or ``s3://bucket/prefix`` (kept as text: a Path would mangle it)."""
        return self.evidently_workspace or str(self.home / "evidently")

    @property
    def reports_dir(self) -> Path:
        """Default folder for drift reports."""
        return self.home / "reports"
