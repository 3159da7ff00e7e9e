"""Fixtures of the gate's tests."""

from __future__ import annotations

import pytest

from monitoring.health import Health, OpsServer
from monitoring.metrics import ScoringMetrics


@pytest.fixture
def served():
    """A scorer's metrics on a real /metrics endpoint, as the controller reads them."""
    metrics = ScoringMetrics()
    server = OpsServer(metrics.registry, Health(), port=0).start()
    yield metrics, f"{server.url}/metrics"
    server.stop()
