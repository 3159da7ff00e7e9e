"""Monitoring's settings: where the metrics are served, and the Pushgateway flows push to."""

from __future__ import annotations

from pydantic import Field

from integrations.mlflow.settings import MlflowSettings


class MonitoringSettings(MlflowSettings):
    """The metrics endpoint of long-running scorers, and where reports' figures go: the Pushgateway, MLflow."""

    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port for /metrics, /healthz, /readyz on 127.0.0.1 (none: off)."
    )
    pushgateway_url: str | None = Field(
        default=None, description="Prometheus Pushgateway (host:port or URL) that flows push their figures to."
    )
