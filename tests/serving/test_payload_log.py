"""Payload logging: each scoring request and its answer, off the request path, on a real Kafka topic."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient

from monitoring.metrics import ScoringMetrics
from monitoring.payload import Exchange
from scorepipe.serve_app import payload_log_for
from scorepipe.settings import Settings
from scoring import ScoringError
from serving.app import build_app
from streaming import payload_log
from streaming.payload_log import KafkaPayloadLog
from streaming.topics import read_topic
from tests.helpers import wait_for
from tests.serving.test_api import records, v2_request


class KeptLog:
    """A payload log that keeps what it is offered (the middleware's side, without a broker)."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self.closed = False

    def offer(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)

    def close(self) -> None:
        self.closed = True


def shut_down(app) -> None:
    for stop in app.router.on_shutdown:
        stop()


def test_scoring_exchanges_are_offered_as_sent_and_nothing_else_is(make_registry, tmp_path):
    registry = make_registry()
    kept = KeptLog()
    settings = Settings(home=tmp_path / "home", registry=registry.root, api_key="k" * 16)
    app, watcher = build_app(settings, payload_log=lambda metrics: kept)
    client = TestClient(app)
    headers = {"x-api-key": "k" * 16}
    try:
        body = orjson.dumps(records(3))
        answer = client.post("/predict_batch", content=body, headers={**headers, "content-type": "application/json"})
        assert answer.status_code == 200
        bad = client.post("/predict", json={"no_such_feature": 1}, headers=headers)
        assert bad.status_code == 422
        infer = client.post("/v2/models/scorepipe/infer", json=v2_request(records(2)), headers=headers)
        assert infer.status_code == 200
        assert client.post("/predict", json=records(1)[0]).status_code == 401  # not authenticated: not logged
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/metrics").status_code == 200

        first, refused, v2 = kept.exchanges
        assert (first.path, first.status, first.request, first.response) == (
            "/predict_batch",
            200,
            body,
            answer.content,
        )
        assert first.model_version == answer.headers["x-model-version"] and first.arm == "champion"
        assert (refused.status, orjson.loads(refused.response)) == (422, bad.json())
        assert v2.path == "/v2/models/scorepipe/infer" and orjson.loads(v2.response) == infer.json()
        assert len({e.request_id for e in kept.exchanges}) == 3
    finally:
        shut_down(app)
        watcher.stop()
    assert kept.closed


@pytest.mark.integration
def test_exchanges_reach_the_kafka_topic_with_their_bodies_and_headers(stream_settings):
    settings = stream_settings(serve_payload_topic=f"payloads-{stream_settings().consumer_group}")
    app, watcher = build_app(settings, payload_log=payload_log_for(settings))
    client = TestClient(app)
    try:
        answers = [client.post("/predict_batch", json=records(2, seed=s)) for s in range(5)]
        assert [a.status_code for a in answers] == [200] * 5
        metrics = app.state.runtime.metrics
        wait_for(
            lambda: metrics.payload_log.labels("sent")._value.get() == 5,
            timeout=60,
            what="five exchanges acknowledged by Kafka",
        )
    finally:
        shut_down(app)
        watcher.stop()
    messages = read_topic(settings, settings.serve_payload_topic)
    assert len(messages) == 5
    logged = sorted((orjson.loads(m.value) for m in messages), key=lambda e: e["time"])
    assert [e["request"] for e in logged] == [records(2, seed=s) for s in range(5)]
    assert [e["response"] for e in logged] == [a.json() for a in answers]
    message = messages[0]
    assert message.key.decode() == orjson.loads(message.value)["request_id"]
    assert dict(message.headers)["model-version"] == answers[0].headers["x-model-version"].encode()


def test_while_kafka_is_away_exchanges_wait_in_a_bounded_queue_and_what_overflows_is_counted(monkeypatch, tmp_path):
    def unreachable(*_args, **_kwargs):
        raise ScoringError("cannot reach Kafka at 127.0.0.1:9")

    monkeypatch.setattr(payload_log, "ensure_topics", unreachable)
    metrics = ScoringMetrics()
    log = KafkaPayloadLog(Settings(home=tmp_path), "payloads", metrics, capacity=2)
    exchange = Exchange("id", "2026-12-07T00:00:00+00:00", "POST", "/predict", 200, "1", "", 0.001, b"{}", b"{}")
    for _ in range(5):
        log.offer(exchange)  # never blocks, Kafka or not
    assert metrics.payload_log.labels("dropped")._value.get() == 3
    log.close(timeout=5)
    assert not log._thread.is_alive()
    assert metrics.payload_log.labels("failed")._value.get() == 2  # held, then not sent: counted, not lost silently
    assert metrics.payload_log.labels("sent")._value.get() == 0
