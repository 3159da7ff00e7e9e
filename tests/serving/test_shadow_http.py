"""`scorepipe serve --shadow`: the challenger scores what the champion answered, after the answer, apart."""

from __future__ import annotations

import pandas as pd
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from scorepipe.settings import Settings
from scoring import Scorer
from scoring.layout import EVENT_ID, SHADOW_DIR
from serving.app import build_app
from tests.serving.test_api import records


def test_the_shadow_scores_the_champions_rows_apart_and_counts_agreement(make_registry, challenger_bundle, tmp_path):
    registry = make_registry(1)
    registry.register(challenger_bundle, note="challenger")
    registry.promote(2, "challenger")
    settings = Settings(home=tmp_path / "home", registry=registry.root, serve_shadow="challenger")
    app, watcher = build_app(settings)
    client = TestClient(app)
    rows = records(50)
    answers = client.post("/predict_batch", json=rows).json()["results"]
    assert all(a["model_version"] == 1 for a in answers)  # the answers are the champion's alone
    for stop in app.router.on_shutdown:  # a clean stop: the shadow drains, its window is written
        stop()
    watcher.stop()
    shadow = pd.concat(pd.read_parquet(p) for p in (settings.live_dir / SHADOW_DIR).rglob("*.parquet"))
    assert len(shadow) == 50 and set(shadow["model_version"]) == {2}
    assert set(shadow[EVENT_ID]) == {a["prediction_id"] for a in answers}  # joinable to labels like the champion's
    expected = Scorer.from_registry(registry, 2).score(pd.DataFrame(rows))
    assert shadow["proba_1"].tolist() == expected["proba_1"].tolist()
    text = generate_latest(app.state.runtime.metrics.registry).decode()  # this process's own samples
    assert 'scorepipe_shadow_rows_compared_total{challenger_version="2",champion_version="1"} 50.0' in text
