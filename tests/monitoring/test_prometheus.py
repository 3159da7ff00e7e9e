"""A real Prometheus scrapes a running consumer, and a real Pushgateway receives the flows' figures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from devservers.process import free_port
from devservers.prometheus import PrometheusServer, Pushgateway
from scoring import Registry, synthetic
from streaming.producer import produce
from streaming.topics import ensure_topics
from tests.helpers import wait_for_value

pytestmark = pytest.mark.integration


def get_json(url):
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None, None


def value_of(prometheus, promql):
    result = prometheus.query(promql)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_consumer_and_receives_the_flows_pushes(
    stream_settings, challenger_bundle, prefect_server, incoming_rows, write_parquet, tmp_path, monkeypatch
):
    settings = stream_settings(stream_batch_events=100)
    registry = Registry(settings.registry_dir)
    registry.promote(registry.register(challenger_bundle), "challenger")
    ensure_topics(settings, settings.features_topic, settings.predictions_topic, settings.dlq_topic)
    ensure_topics(settings, settings.shadow_topic)
    port = free_port()
    stream = subprocess.Popen(
        [sys.executable, "-m", "scorepipe.cli", "stream", "--metrics-port", str(port), "--shadow", "challenger"],
        env={**os.environ, **settings.as_env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    gateway = prometheus = None
    try:
        gateway = Pushgateway(tmp_path / "pushgateway").start()
        prometheus = PrometheusServer(
            tmp_path / "prometheus",
            {"scorepipe-stream": f"127.0.0.1:{port}", "pushgateway": f"127.0.0.1:{gateway.port}"},
            honor=("pushgateway",),
        ).start()
        ready = wait_for_value(
            lambda: (lambda s, b: b if s == 200 else None)(*get_json(f"http://127.0.0.1:{port}/readyz")),
            timeout=60,
            what="the consumer to be ready",
        )
        assert ready["checks"] == {"model": "ok", "partitions": "ok", "broker": "ok", "results": "ok"}
        assert get_json(f"http://127.0.0.1:{port}/healthz")[0] == 200
        produce(settings, count=500, seed=81, malformed_share=0.04)

        incoming = tmp_path / "incoming" / "date=2026-11-27"
        write_parquet(incoming / "part-0.parquet", incoming_rows(300, seed=82))
        monkeypatch.setenv("SCOREPIPE_REGISTRY", str(registry.root))
        monkeypatch.setenv("SCOREPIPE_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("SCOREPIPE_PUSHGATEWAY_URL", gateway.url)
        from flows.drift_report import drift_report
        from flows.score_batch import score_batch

        batch = score_batch(input=str(incoming.parent), output=str(tmp_path / "scored"), shadow="challenger")
        assert batch["rows_scored"] == 300 and batch["shadow_agreement"]["rows_compared"] == 300
        drift_report(current=str(tmp_path / "scored"), output=str(tmp_path / "reports"), return_state=True)
        from flows.performance_report import performance_report

        truth = synthetic.generate(300, seed=82)[[synthetic.ID_COLUMN, synthetic.TARGET]]
        write_parquet(tmp_path / "labels" / "l.parquet", truth.rename(columns={synthetic.TARGET: "label"}))
        performance_report(
            scored=str(tmp_path / "scored"), labels=str(tmp_path / "labels"), output=str(tmp_path / "reports"),
            return_state=True,
        )  # fmt: skip

        scored = wait_for_value(
            lambda: (lambda v: v if v and v >= 480 else None)(value_of(prometheus, "sum(scorepipe_predictions_total)")),
            timeout=60,
            what="Prometheus to scrape the predictions",
        )
        dead = value_of(prometheus, "sum(scorepipe_dead_letters_total)") or 0
        assert scored + dead == 500
        assert value_of(prometheus, 'scorepipe_model_info{alias="champion",version="1"}') == 1
        assert value_of(prometheus, 'scorepipe_model_info{alias="challenger",version="2"}') == 1
        assert value_of(prometheus, "sum(scorepipe_shadow_rows_compared_total)") == scored
        assert value_of(prometheus, "sum(scorepipe_stream_event_latency_seconds_count)") == 500
        assert value_of(prometheus, "scorepipe_stream_batch_duration_seconds_count") >= 5
        assert prometheus.query("scorepipe_stream_consumer_lag") is not None

        pushed = wait_for_value(
            lambda: value_of(prometheus, 'scorepipe_batch_rows_scored{job="score-batch"}'),
            timeout=30,
            what="the batch flow's push to arrive through the Pushgateway",
        )
        assert pushed == 300
        assert value_of(prometheus, 'scorepipe_batch_shadow_label_agreement_ratio{job="score-batch"}') > 0.5
        share = wait_for_value(
            lambda: value_of(prometheus, 'scorepipe_drift_share_drifted_features{job="drift-report"}'),
            timeout=30,
            what="the drift flow's push",
        )
        assert 0 <= share <= 1
        assert value_of(prometheus, 'scorepipe_drift_detected{job="drift-report"}') in (0.0, 1.0)
        coverage = wait_for_value(
            lambda: value_of(prometheus, 'scorepipe_performance_label_coverage_ratio{job="performance-report"}'),
            timeout=30,
            what="the performance flow's push",
        )
        assert coverage == 1.0
        assert 0.5 < value_of(prometheus, 'scorepipe_performance_roc_auc{job="performance-report"}') <= 1.0
    finally:
        stream.send_signal(signal.SIGTERM)
        output, _ = stream.communicate(timeout=60)
        for service in (prometheus, gateway):
            if service is not None:
                service.stop()
    assert stream.returncode == 0, output
    assert "shadow agreement" in output
