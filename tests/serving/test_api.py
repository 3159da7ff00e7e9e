"""The HTTP API in-process (FastAPI's TestClient drives the real app): V2 contract, simple API, bad input, auth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from scorepipe.settings import Settings
from scoring import Scorer, synthetic
from serving.app import build_app
from tests.helpers import wait_for


@pytest.fixture
def make_client(make_registry, tmp_path):
    """Factory: a client over an app following the champion of a fresh registry."""
    made = []

    def make(versions: int = 1, **overrides):
        registry = make_registry(versions=versions)
        settings = Settings(home=tmp_path / "home", registry=registry.root, model_check_seconds=0.1, **overrides)
        app, watcher = build_app(settings)
        made.append(watcher)
        return TestClient(app), registry

    yield make
    for watcher in made:
        watcher.stop()


def records(n, seed=5):
    frame = synthetic.generate(n, seed=seed, with_target=False).drop(columns=[synthetic.ID_COLUMN])
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def v2_request(rows, request_id="req-1"):
    inputs = []
    for name in rows[0]:
        values = [r[name] for r in rows]
        datatype = "BYTES" if isinstance(next((v for v in values if v is not None), ""), str) else "FP64"
        inputs.append({"name": name, "shape": [len(rows)], "datatype": datatype, "data": values})
    return {"id": request_id, "parameters": {"content_type": "pd"}, "inputs": inputs}


def test_v2_metadata_and_health_follow_the_spec(make_client, bundle):
    client, _ = make_client(versions=2)
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    server = client.get("/v2").json()
    assert server["name"] == "scorepipe" and "version" in server and server["extensions"] == []
    meta = client.get("/v2/models/scorepipe").json()
    assert meta["name"] == "scorepipe" and meta["versions"] == ["1", "2"] and meta["platform"] == "sklearn"
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
        f.name: "FP64" if f.kind == "numeric" else "BYTES" for f in bundle.schema.features
    }
    assert all(i["shape"] == [-1] for i in meta["inputs"])
    assert [o["name"] for o in meta["outputs"]] == ["prediction", "proba_0", "proba_1", "confidence", "model_version"]
    assert client.get("/v2/models/scorepipe/versions/2").json()["parameters"]["model_version"] == "2"
    assert client.get("/v2/models/scorepipe/ready").status_code == 200
    assert client.get("/v2/models/scorepipe/versions/2/ready").status_code == 200
    assert client.get("/v2/models/other").status_code == 404
    assert "error" in client.get("/v2/models/scorepipe/versions/9").json()


def test_v2_infer_scores_like_the_core_and_echoes_the_id(make_client, bundle):
    client, _ = make_client()
    rows = records(50)
    response = client.post("/v2/models/scorepipe/infer", json=v2_request(rows, "abc"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("scorepipe", "1", "abc")
    outputs = {o["name"]: o for o in body["outputs"]}
    assert set(outputs) == {"prediction", "proba_0", "proba_1", "confidence", "model_version"}
    assert all(o["shape"] == [50] for o in outputs.values())
    assert outputs["prediction"]["datatype"] == "INT64" and outputs["proba_1"]["datatype"] == "FP64"
    import pandas as pd

    expected = Scorer(bundle, 1).score(pd.DataFrame(rows))
    assert outputs["proba_1"]["data"] == expected["proba_1"].tolist()
    assert outputs["prediction"]["data"] == expected["prediction"].astype(int).tolist()
    assert response.headers["x-model-version"] == "1"
    only = client.post(
        "/v2/models/scorepipe/versions/1/infer", json={**v2_request(rows), "outputs": [{"name": "proba_1"}]}
    ).json()
    assert [o["name"] for o in only["outputs"]] == ["proba_1"]


@pytest.mark.parametrize(
    ("mutate", "status", "needle"),
    [
        (lambda r: r["inputs"].pop(0), 400, "missing inputs: amount"),
        (lambda r: r["inputs"].append({"name": "coupon", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}), 400,
         "unknown inputs: coupon"),
        (lambda r: r["inputs"][0].update(data=["a", 1, 2]), 400, "element 0 is string"),
        (lambda r: r["inputs"][0].update(shape=[2]), 400, "shape [2] does not fit 3 values"),
        (lambda r: r["inputs"][0].update(datatype="BYTES"), 400, "expected FP64"),
        (lambda r: r["inputs"][0].update(data=[-5.0, 1.0, 1.0]), 400, "row 0: amount"),
        (lambda r: r.pop("inputs"), 400, "`inputs` must be a list"),
    ],
)  # fmt: skip
def test_v2_bad_requests_get_400_naming_every_problem(make_client, mutate, status, needle):
    client, _ = make_client()
    request = v2_request(records(3))
    mutate(request)
    response = client.post("/v2/models/scorepipe/infer", json=request)
    assert response.status_code == status
    body = response.json()
    assert needle in body["error"] + " ".join(body.get("problems", []))


def test_simple_api_predicts_one_and_a_partly_bad_batch_in_order(make_client, bundle):
    client, _ = make_client()
    rows = records(6)
    one = client.post("/predict", json=rows[0]).json()
    assert set(one) == {"prediction", "probabilities", "confidence", "model_version", "arm", "prediction_id"}
    assert one["arm"] == "champion" and len(one["prediction_id"]) == 32
    assert one["model_version"] == 1 and abs(sum(one["probabilities"].values()) - 1) < 1e-9
    rows[1]["amount"] = -3.0
    rows[3] = {"amount": 1.0}
    rows[4]["channel"] = 7
    response = client.post("/predict_batch", json={"records": rows})
    assert response.status_code == 200
    body = response.json()
    assert (body["scored"], body["rejected"]) == (3, 3)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert "amount: -3.0 is below the minimum" in results[1]["error"]
    assert results[3]["error"].startswith("missing fields: ")
    assert results[4]["error"] == "channel: expected a string, got int 7"
    assert results[0]["probabilities"] == one["probabilities"]
    info = client.get("/model_info").json()
    assert info["version"] == 1 and info["aliases"] == ["champion"] and "model.joblib" in info["sha256"]
    assert client.get("/health").json() == {"status": "ok", "model_version": 1}


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/predict", b"{not json", 422, "invalid JSON"),
        ("/predict", b'{"amount": NaN}', 422, "invalid JSON"),
        ("/predict", b"", 422, "empty request body"),
        ("/predict", b"[1, 2]", 422, "takes one record"),
        ("/predict", json.dumps({"amount": "x"}).encode(), 422, "amount: expected a number"),
        ("/predict_batch", b"[]", 422, "the batch is empty"),
        ("/predict_batch", b'"text"', 422, "JSON array of records"),
        ("/predict_batch", json.dumps([1, 2]).encode(), 422, "no record can be scored"),
        ("/v2/models/scorepipe/infer", b"{oops", 400, "invalid JSON"),
        ("/v2/models/nope/infer", b'{"inputs": []}', 404, "unknown model 'nope'"),
    ],
)
def test_malformed_input_never_gets_a_500(make_client, path, body, status, needle):
    client, _ = make_client()
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    payload = response.json()
    assert needle in payload["error"] + " ".join(payload.get("problems", []))


def test_limits_on_body_size_and_batch_length_give_413_naming_the_limit(make_client):
    client, _ = make_client(serve_max_body_bytes=2000, serve_max_batch_records=5)
    big = client.post("/predict_batch", content=b"[" + b"1," * 2000 + b"1]")
    assert big.status_code == 413 and "2,000 bytes" in big.json()["error"]
    many = client.post("/predict_batch", json=[{}] * 6)
    assert many.status_code == 413 and "limit of 5" in many.json()["error"]
    v2 = client.post("/v2/models/scorepipe/infer", json=v2_request(records(6)))
    assert v2.status_code == 413


def test_api_key_guards_scoring_but_not_health(make_client):
    client, _ = make_client(api_key="s3cret-key")
    rows = records(1)
    assert client.post("/predict", json=rows[0]).status_code == 401
    assert client.post("/predict", json=rows[0], headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/predict", json=rows[0], headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
    assert client.post("/predict", json=rows[0], headers={"X-API-Key": "s3cret-key"}).status_code == 200
    assert client.get("/v2/models/scorepipe").status_code == 401
    for open_path in ("/health", "/v2/health/live", "/v2/health/ready", "/metrics"):
        assert client.get(open_path).status_code == 200


def test_metrics_count_requests_by_endpoint_status_and_version(make_client):
    client, _ = make_client()
    client.post("/predict", json=records(1)[0])
    client.post("/predict", content=b"{")
    text = client.get("/metrics").text
    assert 'scorepipe_http_requests_total{endpoint="/predict",model_version="1",status="200"} 1.0' in text
    assert 'scorepipe_http_requests_total{endpoint="/predict",model_version="",status="422"} 1.0' in text
    assert 'scorepipe_http_request_duration_seconds_count{endpoint="/predict"} 2.0' in text
    assert 'scorepipe_model_info{alias="champion",version="1"} 1.0' in text


def test_a_promotion_is_served_without_a_restart(make_client):
    client, registry = make_client(versions=2)
    row = records(1)[0]
    assert client.post("/predict", json=row).json()["model_version"] == 1
    registry.promote(2)
    wait_for(
        lambda: client.post("/predict", json=row).json()["model_version"] == 2,
        timeout=30,
        what="the server to follow the promotion",
        interval=0.05,
    )
    assert client.get("/health").json()["model_version"] == 2


@pytest.mark.parametrize("shortcut", [True, False])
def test_model_info_and_metrics_say_whether_the_small_frame_shortcut_is_active(make_client, shortcut):
    client, _ = make_client(small_frame_shortcut=shortcut)
    assert client.get("/model_info").json()["small_frame_shortcut"] is shortcut
    one = records(1)[0]
    assert client.post("/predict", json=one).status_code == 200  # one record: the shortcut's path when on
    text = client.get("/metrics").text
    assert f'scorepipe_small_frame_shortcut_active{{alias="champion"}} {float(shortcut)}' in text


@pytest.mark.parametrize("compiled", [True, False])
def test_model_info_and_metrics_say_whether_compiled_trees_score_and_why_not(make_client, compiled):
    client, _ = make_client(compiled_trees=compiled)
    info = client.get("/model_info").json()["compiled_trees"]
    assert info["active"] is compiled
    assert info["reason"].startswith("verified on ") if compiled else info["reason"] == "off by setting"
    rows = records(600)
    answer = client.post("/predict_batch", json=rows)  # past the small-frame size: the compiled trees' path when on
    assert answer.status_code == 200 and answer.json()["scored"] == 600
    text = client.get("/metrics").text
    assert f'scorepipe_compiled_trees_active{{alias="champion"}} {float(compiled)}' in text


def test_live_drift_of_the_requests_is_measured_off_the_request_path_and_exported(make_client):
    """Drifted requests (JSON API and V2) raise the live drift gauges the server's own thread measures."""
    client, _ = make_client(live_drift_interval_seconds=0.2, live_drift_rows=600)
    drifted = synthetic.generate(600, seed=8, drifted=True, with_target=False).drop(columns=[synthetic.ID_COLUMN])
    rows = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in drifted.to_dict("records")
    ]
    with client:  # runs the app's startup: the live drift thread starts
        assert client.post("/v2/models/scorepipe/infer", json=v2_request(rows[:400])).status_code == 200
        for row in rows[400:]:
            assert client.post("/predict", json=row).status_code == 200

        def measured() -> str | None:
            text = client.get("/metrics").text
            return text if "scorepipe_live_drift_window_rows 600.0" in text else None

        text = wait_for(measured, timeout=30, what="the live drift thread to measure all 600 rows")
    amount = next(line for line in text.splitlines() if line.startswith('scorepipe_feature_drift{feature="amount"'))
    assert 'method="wasserstein"' in amount and float(amount.split()[-1]) > 0.1
    assert 'scorepipe_feature_drift_detected{feature="amount"} 1.0' in text
    assert "scorepipe_live_drift_model_version 1.0" in text
    share = next(line for line in text.splitlines() if line.startswith("scorepipe_live_drift_share "))
    assert float(share.split()[-1]) > 0.1


def test_predict_is_matched_first_and_still_documented(make_client):
    """/predict is served by a plain route ahead of the others, and the OpenAPI schema still lists it."""
    client, _ = make_client()
    routes = client.app.router.routes
    assert getattr(routes[0], "path", None) == "/predict"
    assert "post" in client.get("/openapi.json").json()["paths"]["/predict"]
    assert client.get("/predict").status_code == 405


def test_a_lone_record_skips_the_frame_and_gets_the_frames_answer(make_client, monkeypatch):
    """Up to RECORD_PATH_MAX records go one by one through Scorer.score_one; the answer is the frame path's."""
    from serving import runtime

    client, _ = make_client()
    row = records(1, seed=12)[0]
    frames = []
    real = Scorer.score

    def counted(self, frame, **kwargs):
        frames.append(len(frame))
        return real(self, frame, **kwargs)

    monkeypatch.setattr(Scorer, "score", counted)
    fast = client.post("/predict", json=row).json()
    assert frames == []  # no frame was built for it
    monkeypatch.setattr(runtime, "RECORD_PATH_MAX", 0)
    slow = client.post("/predict", json=row).json()
    assert frames == [1]
    for answer in (fast, slow):
        answer.pop("prediction_id", None)
    assert fast == slow
    batch = client.post("/predict_batch", json=records(runtime.RECORD_PATH_MAX + 1, seed=13)).json()
    assert frames == [1, runtime.RECORD_PATH_MAX + 1] and len(batch["results"]) == runtime.RECORD_PATH_MAX + 1
