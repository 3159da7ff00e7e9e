"""Paging on a drifted night: a real Prometheus with scorepipe's rules, a Pushgateway and an Alertmanager.

The same Prometheus then evaluates every expression of the shipped Grafana dashboard.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batch.run import run_batch
from devservers.prometheus import Alertmanager, PrometheusServer, Pushgateway
from drift.report import build_report
from monitoring.publish import publish_report
from scorepipe.settings import Settings
from scoring import Scorer, synthetic
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"


def named(alerts, name):
    return [a for a in alerts if a["labels"]["alertname"] == name]


def test_a_drifted_night_fires_in_prometheus_and_reaches_alertmanager(make_registry, write_parquet, tmp_path):
    registry = make_registry()
    night = tmp_path / "incoming" / "date=2026-11-28"
    write_parquet(night / "part-0.parquet", synthetic.generate(3000, seed=44, drifted=True, with_target=False))
    run_batch(night, tmp_path / "scored", Scorer.from_registry(registry), chunk_size=4096)
    servers = []
    try:
        manager = Alertmanager(tmp_path / "alertmanager").start()
        servers.append(manager)
        gateway = Pushgateway(tmp_path / "pushgateway").start()
        servers.append(gateway)
        prometheus = PrometheusServer(
            tmp_path / "prometheus",
            {"pushgateway": f"127.0.0.1:{gateway.port}"},
            honor=("pushgateway",),
            rule_files=(MONITORING / "alerts.yml",),
            alertmanager=f"127.0.0.1:{manager.port}",
        ).start()
        servers.append(prometheus)

        settings = Settings(home=tmp_path / "home", registry=registry.root, pushgateway_url=gateway.url)
        summary = build_report(tmp_path / "scored" / "date=2026-11-28", tmp_path / "reports", settings)
        assert summary.drift_detected
        publish_report(settings, "drift-report", summary)

        firing = wait_for(
            lambda: [a for a in named(prometheus.alerts(), "ScorepipeDriftDetected") if a["state"] == "firing"],
            timeout=30,
            what="ScorepipeDriftDetected to fire in Prometheus",
        )
        share = f"{summary.share_drifted_features:.0%}"
        assert firing[0]["annotations"]["summary"].startswith(f"Drift against model v1: {share[:-1]}")
        assert firing[0]["labels"]["severity"] == "warning" and firing[0]["labels"]["job"] == "drift-report"
        received = wait_for(
            lambda: named(manager.alerts(), "ScorepipeDriftDetected"), timeout=30, what="the alert in Alertmanager"
        )
        assert received[0]["status"]["state"] == "active" and "runbook" in received[0]["annotations"]
        assert not named(prometheus.alerts(), "ScorepipeDriftReportStale")  # the report just ran

        # Every expression of the Grafana dashboard evaluates (the API refuses a bad one with its error).
        dashboard = json.loads((MONITORING / "grafana" / "scorepipe.json").read_text())
        expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
        assert len(expressions) >= 20
        for expr in expressions:
            prometheus.query(expr.replace("$__rate_interval", "1m"))
        assert prometheus.query("max(scorepipe_drift_detected)")[0]["value"][1] == "1"
    finally:
        for server in reversed(servers):
            server.stop()
