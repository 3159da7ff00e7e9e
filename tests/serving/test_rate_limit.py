"""Rate limits per API key or address: 429 with Retry-After past the limit, counted, shared by every worker."""

from __future__ import annotations

import concurrent.futures
import json
import urllib.error
import urllib.request

import pytest
from fastapi.testclient import TestClient

from scorepipe.settings import Settings
from scoring import SettingsError
from serving.app import build_app
from serving.rate_limit import RateLimiter
from tests.serving.test_api import records
from tests.serving.test_server import serve


@pytest.fixture
def limited(make_registry, tmp_path):
    made = []

    def make(limit: str, **overrides):
        registry = make_registry()
        settings = Settings(home=tmp_path / "home", registry=registry.root, serve_rate_limit=limit, **overrides)
        app, watcher = build_app(settings)
        made.append((app, watcher))
        return TestClient(app)

    yield make
    for app, watcher in made:
        for stop in app.router.on_shutdown:
            stop()
        watcher.stop()


def test_past_the_limit_a_request_gets_429_with_retry_after_and_is_counted(limited):
    client = limited("3/minute")
    row = records(1)[0]
    assert [client.post("/predict", json=row).status_code for _ in range(3)] == [200, 200, 200]
    refused = client.post("/predict", json=row)
    assert refused.status_code == 429 and "3 per 1 minute" in refused.json()["error"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert client.get("/health").status_code == 200  # probes and /metrics are never limited
    metrics = client.get("/metrics").text
    assert "scorepipe_http_rate_limited_total 1.0" in metrics
    refused_lines = [line for line in metrics.splitlines() if line.startswith("scorepipe_http_requests_total{")]
    assert any('status="429"' in line and line.endswith(" 1.0") for line in refused_lines), refused_lines


def test_the_key_counts_once_proved_and_a_wrong_key_is_refused_before_it_counts(limited):
    client = limited("2/minute", api_key="k-one")
    row = records(1)[0]
    one = {"X-API-Key": "k-one"}
    assert [client.post("/predict", json=row, headers=one).status_code for _ in range(3)] == [200, 200, 429]
    other = {"Authorization": "Bearer k-other"}  # a wrong key is refused first: 401, and uses no budget of k-one
    assert client.post("/predict", json=row, headers=other).status_code == 401


def test_a_limit_that_is_not_one_is_named_at_start():
    with pytest.raises(SettingsError, match="serve_rate_limit.*not a rate limit"):
        Settings().model_copy(update={"serve_rate_limit": "lots per day"})


def test_the_shared_file_storage_counts_for_every_process(tmp_path):
    uri = f"sqlite:///{tmp_path / 'limits.sqlite'}"
    first, second = RateLimiter("5/minute", uri), RateLimiter("5/minute", uri)
    outcomes = [(first if i % 2 else second).refuse("key:a") is None for i in range(8)]
    assert outcomes.count(True) == 5 and outcomes[5:] == [False, False, False]
    assert first.refuse("key:b") is None  # another caller, another count


@pytest.mark.integration
def test_two_workers_share_one_limit(make_registry, tmp_path):
    registry = make_registry()
    settings = Settings(home=tmp_path / "home", registry=registry.root, serve_rate_limit="20/minute")
    server, url = serve(settings, tmp_path, "--workers", "2")
    try:
        body = json.dumps(records(1)[0]).encode()

        def call(_: int) -> int:
            request = urllib.request.Request(f"{url}/predict", data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(call, range(60)))
    finally:
        server.stop()
    assert statuses.count(200) == 20 and statuses.count(429) == 40, statuses
