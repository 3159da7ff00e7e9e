from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from monitoring.health import Health, OpsServer
from monitoring.metrics import ScoringMetrics, observe_many
from scoring.watcher import ReloadEvent


@pytest.mark.parametrize("size", [5000, 7])  # counted with numpy, and a few one by one
def test_observe_many_fills_the_same_buckets_as_observe(size):
    values = np.random.default_rng(1).exponential(0.1, size)
    values[:3] = [0.0, 0.005, 1e9]  # on a bound, and past the last one
    one, many = CollectorRegistry(), CollectorRegistry()
    buckets = (0.005, 0.01, 0.1, 1)
    a = Histogram("h", "h", buckets=buckets, registry=one)
    b = Histogram("h", "h", buckets=buckets, registry=many)
    for v in values:
        a.observe(float(v))
    observe_many(b, values)

    def samples(registry):
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in registry.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    expected, actual = samples(one), samples(many)
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=1e-12), key


@pytest.mark.parametrize("size", [3, 500])
def test_predictions_are_counted_by_label_alike_for_a_few_and_for_many(size):
    metrics = ScoringMetrics()
    labels = np.resize(np.array([1, 0, 1], dtype=object), size)
    metrics.record_predictions(4, labels, np.full(size, 0.75))
    snap = metrics.snapshot()
    ones = int((labels == 1).sum())
    assert snap["scorepipe_predictions_total{label=1,model_version=4}"] == ones
    assert snap["scorepipe_predictions_total{label=0,model_version=4}"] == size - ones
    assert snap["scorepipe_prediction_confidence_count{}"] == size


def test_model_info_follows_reloads_and_counts_refusals():
    metrics = ScoringMetrics()
    metrics.set_model("champion", 1)
    metrics.on_reload(ReloadEvent("champion", 1, 2, ok=True))
    metrics.on_reload(ReloadEvent("champion", 2, 3, ok=False, reason="sha256"))
    snap = metrics.snapshot()
    assert snap["scorepipe_model_info{alias=champion,version=2}"] == 1
    assert "scorepipe_model_info{alias=champion,version=1}" not in snap
    assert snap["scorepipe_model_reloads_total{alias=champion}"] == 1
    assert snap["scorepipe_model_reload_failures_total{alias=champion}"] == 1


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_ops_server_answers_metrics_health_and_readiness_with_reasons():
    metrics = ScoringMetrics()
    metrics.set_model("champion", 7)
    health = Health(stale_after_seconds=60)
    state = {"partitions": "no partitions assigned"}
    health.add_check("model", lambda: None)
    health.add_check("partitions", lambda: state["partitions"])
    server = OpsServer(metrics.registry, health, port=0).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        status, body = get(server.url + "/metrics")
        assert status == 200 and b'scorepipe_model_info{alias="champion",version="7"} 1.0' in body
        status, body = get(server.url + "/healthz")
        assert status == 200 and json.loads(body)["status"] == "alive"
        status, body = get(server.url + "/readyz")
        assert status == 503
        exposition = get(server.url + "/metrics")[1]
        assert b"scorepipe_ready 0.0" in exposition and b'scorepipe_ready_check{check="partitions"} 0.0' in exposition
        assert json.loads(body)["checks"] == {"model": "ok", "partitions": "no partitions assigned"}
        state["partitions"] = None
        assert get(server.url + "/readyz")[0] == 200
        assert b"scorepipe_ready 1.0" in get(server.url + "/metrics")[1]
        refused = {"model": None}
        health.add_note("model", lambda: refused["model"])
        assert "notes" not in json.loads(get(server.url + "/readyz")[1])
        refused["model"] = "serving v7; 1 reload(s) refused, the last: v8: features differ"
        status, body = get(server.url + "/readyz")
        assert status == 200 and json.loads(body)["notes"] == refused  # seen, and the old model still serves
        assert get(server.url + "/nope")[0] == 404
    finally:
        server.stop()


def test_a_stalled_loop_is_not_live():
    health = Health(stale_after_seconds=0.0)
    assert health.live()[0] is False


@pytest.mark.parametrize("url", [None, ""])
def test_push_without_a_gateway_does_nothing(url):
    from monitoring.push import push_run_figures

    assert push_run_figures(url, job="score-batch", figures={"scorepipe_x": (1.0, "x")}) is False
