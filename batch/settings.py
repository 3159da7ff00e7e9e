"""Batch runs' settings: parallel files on Dask, and where their figures are pushed (monitoring's)."""

from __future__ import annotations

from pydantic import Field

from monitoring.settings import MonitoringSettings


class BatchSettings(MonitoringSettings):
    """How ``score-batch`` spreads files over workers."""

    batch_workers: int = Field(
        default=1,
        ge=0,
        description="score-batch: files scored in parallel on a Dask LocalCluster (0: one per core; 1: no Dask).",
    )
    batch_split_rows: int = Field(
        default=200_000,
        ge=0,
        description="score-batch on Dask: a file with at least twice this many rows is cut into row ranges of at "
        "least this many (up to two per worker), scored on the workers, then joined into its one output "
        "(0: whole files only).",
    )
    dask_address: str | None = Field(
        default=None, description="score-batch: an existing Dask scheduler (tcp://host:8786) instead of a LocalCluster."
    )
