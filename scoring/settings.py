"""The one settings object. Built at an entry point (CLI, flow, consumer) and passed down.

The core never reads ``os.environ`` itself: everything configurable arrives through ``Settings``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration for every scorepipe entry point, read from ``SCOREPIPE_*`` variables.

    >>> Settings(home=Path("/tmp/sp")).registry_dir
    PosixPath('/tmp/sp/registry')
    """

    model_config = SettingsConfigDict(env_prefix="SCOREPIPE_", frozen=True, extra="ignore")

    home: Path = Field(
        default=Path(".scorepipe"),
        description="Root of everything scorepipe writes (registry, demo data, results).",
    )
    registry: Path | None = Field(default=None, description="Model registry folder; default HOME/registry.")
    chunk_size: int = Field(default=100_000, gt=0, description="Rows scored per vectorized chunk.")
    min_roc_auc: float = Field(
        default=0.75, ge=0.0, le=1.0, description="Quality gate: minimum holdout ROC AUC to become champion."
    )
    reference_rows: int = Field(
        default=5_000, gt=0, description="Rows of training features kept in the bundle as drift reference."
    )
    seed: int = Field(default=42, description="Seed for synthetic data, splits and sampling.")

    @property
    def registry_dir(self) -> Path:
        return self.registry if self.registry is not None else self.home / "registry"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"
