"""Canary splits over HTTP: a key always meets its arm's version, on every route, and weights move live."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from scorepipe.settings import Settings
from scoring import Scorer
from scoring.canary import CANARY, CHAMPION, bucket_of, threshold
from serving.app import build_app
from tests.helpers import wait_for
from tests.serving.test_api import records, v2_request


def key_for(arm: str, weight: float, start: int = 0) -> str:
    """A key that meets ``arm`` at ``weight``."""
    for i in range(start, start + 100_000):
        key = f"customer-{i}"
        if (bucket_of(key) < threshold(weight)) == (arm == CANARY):
            return key
    raise AssertionError("no such key")


@pytest.fixture
def canary_client(make_registry, tmp_path, challenger_bundle):
    made = []

    def make(weight: float | None = 50.0, **overrides):
        registry = make_registry(versions=1)
        registry.register(challenger_bundle, note="canary")
        if weight is not None:
            registry.start_canary("v2", weight=weight)
        values = {"home": tmp_path / "home", "registry": registry.root, "model_check_seconds": 0.1, "min_roc_auc": 0.5}
        settings = Settings(**{**values, **overrides})
        app, watcher = build_app(settings)
        made.append((app, watcher))
        return TestClient(app), registry

    yield make
    for app, watcher in made:
        for stop in app.router.on_shutdown:
            stop()
        watcher.stop()


def test_a_key_meets_its_arm_on_predict_again_and_again(canary_client):
    client, _ = canary_client(weight=50)
    row = records(1)[0]
    for arm, version in ((CANARY, 2), (CHAMPION, 1)):
        key = key_for(arm, 50)
        for _ in range(3):
            answer = client.post("/predict", json=row, headers={"x-canary-key": key})
            body = answer.json()
            assert answer.status_code == 200, body
            assert (body["arm"], body["model_version"], body["canary_key"]) == (arm, version, key)
            assert answer.headers["x-model-arm"] == arm and answer.headers["x-model-version"] == str(version)


def test_without_a_key_the_draw_is_reported_and_meets_the_same_arm_when_sent_back(canary_client):
    client, _ = canary_client(weight=50)
    row = records(1)[0]
    arms = set()
    for _ in range(20):
        first = client.post("/predict", json=row).json()
        again = client.post("/predict", json=row, headers={"x-canary-key": first["canary_key"]}).json()
        assert (again["arm"], again["model_version"]) == (first["arm"], first["model_version"])
        arms.add(first["arm"])
    assert arms == {CANARY, CHAMPION}  # random draws reach both arms at 50%


def test_a_batch_splits_by_each_records_key_field_taken_out_before_scoring(canary_client):
    client, registry = canary_client(weight=30, serve_canary_key_field="customer")
    rows = records(200)
    keyed = [{**row, "customer": f"customer-{i}"} for i, row in enumerate(rows)]
    body = client.post("/predict_batch", json=keyed).json()
    assert body["scored"] == 200 and body["rejected"] == 0, body
    scores = {v: Scorer.from_registry(registry, v).score(pd.DataFrame(rows)) for v in (1, 2)}
    for i, result in enumerate(body["results"]):
        arm = CANARY if bucket_of(f"customer-{i}") < threshold(30) else CHAMPION
        version = 2 if arm == CANARY else 1
        assert (result["arm"], result["model_version"]) == (arm, version)
        assert result["probabilities"]["1"] == scores[version]["proba_1"].iloc[i]  # its arm's score, exactly
    alone = client.post("/predict", json=keyed[0]).json()  # the field decides /predict too
    assert alone["canary_key"] == "customer-0" and alone["arm"] == body["results"][0]["arm"]


def test_v2_inference_meets_the_arm_of_its_header(canary_client):
    client, _ = canary_client(weight=50)
    request = v2_request(records(3))
    for arm in (CANARY, CHAMPION):
        key = key_for(arm, 50, start=500)
        answer = client.post("/v2/models/scorepipe/infer", json=request, headers={"x-canary-key": key})
        body = answer.json()
        assert answer.status_code == 200, body
        assert body["parameters"]["arm"] == arm == answer.headers["x-model-arm"]
        assert body["model_version"] == ("2" if arm == CANARY else "1")
    pinned = client.post(
        "/v2/models/scorepipe/versions/1/infer", json=request, headers={"x-canary-key": key_for(CANARY, 50)}
    )
    assert pinned.json()["model_version"] == "1" and pinned.json()["parameters"]["arm"] == CHAMPION


def test_the_server_follows_the_weight_and_the_end_of_the_plan(canary_client):
    client, registry = canary_client(weight=10)
    row = records(1)[0]
    # the premise: a key that meets the champion at 10 and the canary at 60
    key = next(k for k in (f"customer-{i}" for i in range(100_000)) if threshold(10) <= bucket_of(k) < threshold(60))

    def arm() -> str:
        return client.post("/predict", json=row, headers={"x-canary-key": key}).json()["arm"]

    assert arm() == CHAMPION
    registry.update_canary(lambda plan: plan.with_changes(weight=60))
    wait_for(lambda: arm() == CANARY, timeout=30, what="the server to take the new weight", interval=0.05)
    registry.update_canary(lambda plan: plan.with_changes(state="aborted", weight=0.0, reason="test"))
    wait_for(lambda: arm() == CHAMPION, timeout=30, what="the server to end the split", interval=0.05)
    assert "canary_key" not in client.post("/predict", json=row).json()  # no plan: no draw, no overhead


def test_a_canary_that_fails_its_checks_takes_no_request(canary_client):
    client, _ = canary_client(weight=100, min_roc_auc=0.9999)  # overrides the fixture's 0.5: v2 fails the gate
    body = client.post("/predict", json=records(1)[0]).json()
    assert body["arm"] == CHAMPION and body["model_version"] == 1


@pytest.mark.integration
def test_moving_the_weight_under_a_running_server_fails_no_request(make_registry, challenger_bundle, tmp_path):
    import concurrent.futures
    import json
    import threading
    import urllib.error
    import urllib.request

    from tests.serving.test_server import serve

    registry = make_registry(versions=1)
    registry.register(challenger_bundle, note="canary")
    registry.start_canary("v2", weight=10)
    settings = Settings(home=tmp_path / "home", registry=registry.root, min_roc_auc=0.5)
    server, url = serve(settings, tmp_path, "--workers", "2")
    body = json.dumps(records(1)[0]).encode()
    outcomes: list[tuple[int, str]] = []
    stop = threading.Event()

    def call(i: int) -> tuple[int, str]:
        headers = {"Content-Type": "application/json", "x-canary-key": f"customer-{i % 500}"}
        request = urllib.request.Request(f"{url}/predict", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())["arm"]
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    def load() -> None:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            i = 0
            while not stop.is_set() and i < 20_000:  # bounded
                outcomes.extend(pool.map(call, range(i, i + 40)))
                i += 40

    loader = threading.Thread(target=load)
    try:
        loader.start()
        wait_for(lambda: len(outcomes) >= 200, timeout=60, what="requests at weight 10")
        registry.update_canary(lambda plan: plan.with_changes(weight=60))
        moved = len(outcomes)
        wait_for(
            lambda: sum(arm == CANARY for _, arm in outcomes[moved:]) > 150,
            timeout=60,
            what="the workers to take the new weight",
        )
        registry.update_canary(lambda plan: plan.with_changes(state="aborted", weight=0.0, reason="test"))
        ended = len(outcomes)
        wait_for(
            lambda: len(outcomes) - ended >= 200 and all(a == CHAMPION for _, a in outcomes[-100:]),
            timeout=60,
            what="every key back on the champion",
        )
    finally:
        stop.set()
        loader.join(timeout=120)
        server.stop()
    assert all(status == 200 for status, _ in outcomes), [o for o in outcomes if o[0] != 200][:5]
    early = outcomes[:200]
    assert sum(arm == CANARY for _, arm in early) / len(early) < 0.3  # weight 10 held before the move
