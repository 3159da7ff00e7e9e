"""The gate reading its traffic from a real Prometheus that scrapes a scorer's /metrics.

Prometheus's own ``histogram_quantile`` is the reference for the p95 the gate computes from
buckets, and the controller judges a slow canary from ``increase()`` over the step's interval.
"""

from __future__ import annotations

import time

import pytest

from devservers.prometheus import PrometheusServer
from gate.controller import CanaryController
from gate.traffic import arm_buckets, parse_reading, quantile
from scoring.canary import CANARY, CHAMPION
from tests.gate.test_controller import MODELS_NOT_COMPARED, last_check, make_settings, traffic
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def test_a_slow_canary_is_judged_from_prometheus_and_its_p95_matches_prometheus_own(
    tmp_path, make_registry, challenger_bundle, served
):
    metrics, url = served
    registry = make_registry(1)
    registry.register(challenger_bundle, note="canary")
    for arm, version in ((CHAMPION, "1"), (CANARY, "2")):  # every series exists at 0 before the interval
        metrics.arm_seconds.labels(arm, version)
        for outcome in ("predicted", "rejected"):
            metrics.arm_events.labels(arm, version, outcome)
    prometheus = PrometheusServer(tmp_path / "prometheus", {"scorer": url.removeprefix("http://").split("/")[0]})
    prometheus.start()
    try:
        plan = registry.start_canary("v2", weight=20, steps=(20, 100), interval_seconds=1, failure_limit=1)
        started = time.time()
        wait_for(  # a scrape after the step began holds the zeros: the rise below falls inside the interval
            lambda: any(
                float(s["value"][1]) > started
                for s in prometheus.query('timestamp(scorepipe_arm_score_seconds_count{arm="canary"})')
            ),
            timeout=30,
            what="Prometheus to scrape the scorer after the step began",
        )
        traffic(metrics, plan, champion_seconds=0.004, canary_seconds=0.040)
        wait_for(
            lambda: prometheus.query('scorepipe_arm_score_seconds_count{arm="canary"} > 0'),
            timeout=30,
            what="Prometheus to scrape the canary's timings",
        )

        page = parse_reading([metrics.exposition().decode()])
        for arm, version in ((CHAMPION, 1), (CANARY, 2)):
            reference = prometheus.query(
                f'histogram_quantile(0.95, sum by (le) (scorepipe_arm_score_seconds_bucket{{arm="{arm}"}}))'
            )
            assert quantile(0.95, arm_buckets(page.buckets, arm, version)) == pytest.approx(
                float(reference[0]["value"][1]), rel=1e-9
            )

        settings = make_settings(
            tmp_path,
            registry,
            None,
            canary_prometheus_url=prometheus.url,
            **MODELS_NOT_COMPARED,
        )
        controller = CanaryController(settings, holder="a")
        assert registry.take_canary_lease("a", 30)
        rolled = controller.judge(registry.canary())
        errors = last_check(registry, "error_ratio")
        assert errors["verdict"] == "pass", errors
        latency = last_check(registry, "latency_p95")
        assert latency["verdict"] == "fail" and 5 < latency["figure"] < 20
        assert rolled.state == "aborted" and registry.resolve("champion") == 1
    finally:
        prometheus.stop()
