"""Pushing a finished run's figures to a Prometheus Pushgateway (batch runs, drift and performance reports).

Short-lived runs end before Prometheus could scrape them, so they push. Nothing happens when no
Pushgateway is configured. A push that fails is logged and never fails the run it describes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

log = logging.getLogger("scorepipe.push")


def push_run_figures(
    url: str | None,
    *,
    job: str,
    figures: Mapping[str, tuple[float, str]],
    grouping: Mapping[str, str] | None = None,
) -> bool:
    """Push ``figures`` (metric name -> (value, help)) as gauges for ``job``; True if pushed.

    Every push also sets ``<job prefix>_last_run_timestamp_seconds`` so an alert can tell a run
    that stopped happening from one that keeps succeeding.
    """
    if not url:
        return False
    registry = CollectorRegistry()
    for name, (value, description) in figures.items():
        Gauge(name, description, registry=registry).set(value)
    prefix = f"scorepipe_{job.replace('-', '_')}"
    Gauge(f"{prefix}_last_run_timestamp_seconds", "When this run finished (Unix time)", registry=registry).set(
        time.time()
    )
    try:
        push_to_gateway(url, job=job, registry=registry, grouping_key=dict(grouping or {}), timeout=10)
    except OSError as exc:
        log.warning("could not push %s figures to the Pushgateway at %s: %s", job, url, exc)
        return False
    return True
