"""HTTP traffic in the monitoring loop: the server's live window, prediction ids, and labels through /feedback."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from performance.labels import read_labels
from scorepipe.settings import Settings
from scoring.layout import EVENT_ID
from serving.app import build_app
from tests.helpers import wait_for
from tests.serving.test_api import records, v2_request


@pytest.fixture
def server(make_registry, tmp_path):
    registry = make_registry()
    settings = Settings(home=tmp_path / "home", registry=registry.root, model_check_seconds=0.1)
    app, watcher = build_app(settings)
    client = TestClient(app)
    yield client, settings, app
    for stop in app.router.on_shutdown:
        stop()
    watcher.stop()


def shut_down(app) -> None:
    """What a clean stop runs: the batcher stops, then the live window writes what it holds."""
    for stop in app.router.on_shutdown:
        stop()


def live(settings) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(p) for p in sorted(settings.live_dir.rglob("*.parquet")))


def test_what_the_server_scores_reaches_the_live_window_with_its_prediction_id(server):
    client, settings, app = server
    one = client.post("/predict", json=records(1)[0]).json()
    batch = client.post("/predict_batch", json=records(5, seed=6)).json()
    client.post("/v2/models/scorepipe/infer", json=v2_request(records(3, seed=7)))
    shut_down(app)  # nothing is lost on a clean stop
    rows = live(settings)
    ids = [one["prediction_id"], *(r["prediction_id"] for r in batch["results"])]
    assert len(rows) == 9 and set(ids) <= set(rows[EVENT_ID])
    first = rows.set_index(EVENT_ID).loc[one["prediction_id"]]
    assert first["proba_1"] == one["probabilities"]["1"] and first["model_version"] == 1
    assert {"amount", "channel", "proba_1", "model_version"} <= set(rows.columns)


def test_lone_records_reach_the_live_window_as_a_frame_of_them_would(make_registry, tmp_path):
    """Rows scored one by one (appended as rows) are written with the values and types of the frame path's."""
    from serving.runtime import RECORD_PATH_MAX

    sent = records(RECORD_PATH_MAX + 1, seed=8)
    sent[0]["credit_score"] = None  # a missing value, as JSON sends it
    settings = Settings(
        home=tmp_path / "home", registry=make_registry().root, live_window_rows=len(sent)
    )  # one file of lone records, one of the batch
    app, watcher = build_app(settings)
    try:
        client = TestClient(app)
        assert client.get("/model_info").json()["compiled_trees"]["active"]  # the record path is there
        alone = [client.post("/predict", json=record).json()["prediction_id"] for record in sent]
        together = [r["prediction_id"] for r in client.post("/predict_batch", json=sent).json()["results"]]
        shut_down(app)
    finally:
        watcher.stop()
    first, second = (pd.read_parquet(p) for p in sorted(settings.live_dir.rglob("*.parquet")))
    assert first[EVENT_ID].tolist() == alone and second[EVENT_ID].tolist() == together
    assert first.dtypes.to_dict() == second.dtypes.to_dict()
    assert str(first["scored_at"].dtype) == "datetime64[ns, UTC]" and pd.isna(first["credit_score"][0])
    pd.testing.assert_frame_equal(
        first.drop(columns=[EVENT_ID, "scored_at"]), second.drop(columns=[EVENT_ID, "scored_at"])
    )


def test_feedback_stores_labels_for_earlier_predictions_that_performance_reads(server):
    client, settings, _ = server
    results = client.post("/predict_batch", json=records(4)).json()["results"]
    answer = client.post(
        "/feedback",
        json={
            "feedback": [
                {"prediction_id": r["prediction_id"], "label": label}
                for r, label in zip(results, [1, 0, True, "0"], strict=True)
            ]
        },
    )
    assert answer.status_code == 200, answer.json()
    assert answer.json()["stored"] == 4
    found = read_labels(settings.labels_dir, id_column=EVENT_ID, label_column="label", classes=[0, 1])
    assert dict(zip(found.labels["id"], found.labels["label"], strict=True)) == {
        results[0]["prediction_id"]: 1, results[1]["prediction_id"]: 0,
        results[2]["prediction_id"]: 1, results[3]["prediction_id"]: 0,
    }  # fmt: skip


def test_bad_feedback_is_named_item_by_item_and_nothing_is_half_written(server):
    client, settings, _ = server
    answer = client.post(
        "/feedback",
        json=[
            {"prediction_id": "abc", "label": 1},
            {"prediction_id": "", "label": 1},
            {"prediction_id": "x", "label": 7},
            "oops",
        ],
    )
    body = answer.json()
    assert answer.status_code == 422 and "3 of 4" in body["error"]
    problems = body["problems"]
    assert any(p.startswith("item 1: prediction_id") for p in problems)
    assert any(p.startswith("item 2: label 7 is not one of the model's classes") for p in problems)
    assert any(p.startswith("item 3: expected an object") for p in problems)
    assert not any(p.startswith("item 0") for p in problems)
    assert not list((settings.home / "labels").rglob("*.parquet")), "a refused request wrote labels"
    assert client.post("/feedback", json=[]).status_code == 422


def test_a_quiet_server_writes_its_live_window_rows_without_waiting_for_more_requests(make_registry, tmp_path):
    registry = make_registry()
    settings = Settings(home=tmp_path / "home", registry=registry.root, live_window_seconds=1)
    app, watcher = build_app(settings)
    try:
        assert TestClient(app).post("/predict_batch", json=records(3)).status_code == 200
        files = wait_for(
            lambda: list(settings.live_dir.rglob("*.parquet")), timeout=30, what="the live window written while idle"
        )
        assert sum(len(pd.read_parquet(f)) for f in files) == 3
    finally:
        shut_down(app)
        watcher.stop()
