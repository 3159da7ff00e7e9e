"""`scorepipe serve` as a real server process: one score on every path, and hot reload under load."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from batch.run import run_batch
from devservers.process import ManagedProcess, free_port, http_ok
from scorepipe.settings import Settings
from scoring import Registry, Scorer, fastpath, synthetic
from streaming.consumer import score_stream
from streaming.producer import produce
from streaming.topics import ensure_topics
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def serve(settings, tmp_path, *args):
    port = free_port()
    server = ManagedProcess(
        "scorepipe serve",
        [sys.executable, "-m", "scorepipe.cli", "serve", "--port", str(port), *args],
        env={**os.environ, **settings.as_env(), "SCOREPIPE_MODEL_CHECK_SECONDS": "0.2"},
        log_path=tmp_path / f"serve-{port}.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    server.wait_until(lambda: http_ok(f"{url}/v2/health/ready"), timeout=60, what="ready")
    return server, url


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def as_records(frame):
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def import_from_mlflow(server, settings, monkeypatch):
    """A forest a team logged to MLflow (skops), imported and promoted: the champion every path then scores with."""
    import mlflow
    import mlflow.sklearn

    from scorepipe.cli import main
    from tests.integrations.mlflow.helpers import TREES, fitted, log

    train = synthetic.generate(3000, seed=13)
    name = f"parity-{os.getpid()}-{time.monotonic_ns()}"
    log(server, fitted(train), train[list(synthetic.FEATURES)], name=name, skops_trusted_types=TREES)
    reference = settings.home / "reference.parquet"
    reference.parent.mkdir(parents=True, exist_ok=True)
    train.to_parquet(reference)
    monkeypatch.setenv("SCOREPIPE_REGISTRY", str(settings.registry_dir))
    command = ["models", "import", f"models:/{name}/1", "--tracking-uri", server.tracking_uri,
               "--reference", str(reference), "--target", synthetic.TARGET, "--alias", "champion"]  # fmt: skip
    assert main(command) == 0
    mlflow.set_tracking_uri(server.tracking_uri)
    return mlflow.sklearn.load_model(f"models:/{name}/1")


@pytest.mark.parametrize(
    ("model", "kafka_client", "fast_paths"),
    [
        ("trained", "kafka-python", True),
        ("imported from MLflow", "kafka-python", True),
        ("trained", "confluent", True),
        ("trained", "kafka-python", False),
    ],
    ids=["trained", "imported-from-mlflow", "trained-confluent", "trained-sklearn-only"],
)
def test_the_same_rows_get_the_same_scores_in_batch_stream_and_both_http_apis(
    model, fast_paths, stream_settings, tmp_path, monkeypatch, request
):
    from flows.score_batch import score_batch

    settings = stream_settings(compiled_trees=fast_paths, small_frame_shortcut=fast_paths)
    theirs = None
    if model != "trained":
        theirs = import_from_mlflow(request.getfixturevalue("mlflow_server"), settings, monkeypatch)
    # 700 rows: the batch flow (one 700-row chunk) and the 700-row HTTP requests go through the compiled
    # trees; /predict (and stream micro-batches of 512 events or fewer) through the small-frame shortcut;
    # with the fast paths off (or for the MLflow forest), everything through sklearn's predict_proba.
    rows = synthetic.generate(700, seed=91, with_target=False)
    ids = rows[synthetic.ID_COLUMN].tolist()
    features = rows.drop(columns=[synthetic.ID_COLUMN])

    rows.to_parquet(tmp_path / "rows.parquet")
    scorer = Scorer.from_registry(Registry(settings.registry_dir), options=settings.scorer_options)
    ours = model == "trained" and fast_paths
    assert scorer.small_frame_shortcut == scorer.compiled_trees == ours and fastpath.MAX_ROWS < 700
    for name, value in settings.as_env().items():  # the batch flow reads its settings from the environment
        if name in {"SCOREPIPE_COMPILED_TREES", "SCOREPIPE_SMALL_FRAME_SHORTCUT"}:
            monkeypatch.setenv(name, value)
    run_batch(tmp_path / "rows.parquet", tmp_path / "batch", scorer, chunk_size=700)
    batch = pd.read_parquet(tmp_path / "batch" / "rows.parquet").set_index(synthetic.ID_COLUMN)
    monkeypatch.setenv("SCOREPIPE_REGISTRY", str(settings.registry_dir))  # the batch flow on Dask, 2 workers
    score_batch.fn(input=str(tmp_path / "rows.parquet"), output=str(tmp_path / "dask"), chunk_size=700, workers=2)
    on_dask = pd.read_parquet(tmp_path / "dask" / "rows.parquet").set_index(synthetic.ID_COLUMN)

    ensure_topics(settings)
    produce(settings, count=700, seed=91)
    score_stream(settings, scorer).run(idle_exit_seconds=1)
    from streaming.topics import read_topic

    stream = {m.key.decode(): json.loads(m.value) for m in read_topic(settings, settings.predictions_topic)}
    # the exactly-once stream, over the same events, to its own topics and group
    once = settings.model_copy(
        update={
            "stream_guarantee": "exactly-once",
            "predictions_topic": f"{settings.predictions_topic}-once",
            "dlq_topic": f"{settings.dlq_topic}-once",
            "consumer_group": f"{settings.consumer_group}-once",
        }
    )
    ensure_topics(once)
    score_stream(once, scorer).run(idle_exit_seconds=1)
    exactly_once = {m.key.decode(): json.loads(m.value) for m in read_topic(once, once.predictions_topic)}

    server, url = serve(settings, tmp_path)
    try:
        status, simple = post(f"{url}/predict_batch", as_records(features))
        assert status == 200 and simple["scored"] == 700
        inputs = [
            {
                "name": name,
                "shape": [700],
                "datatype": "BYTES" if features[name].dtype == object else "FP64",
                "data": [None if isinstance(v, float) and np.isnan(v) else v for v in features[name].tolist()],
            }
            for name in features.columns
        ]
        status, v2 = post(f"{url}/v2/models/scorepipe/infer", {"id": "parity", "inputs": inputs})
        assert status == 200, v2
        status, single = post(f"{url}/predict", as_records(features.iloc[[7]])[0])
        assert status == 200
    finally:
        server.stop()

    v2_out = {o["name"]: o["data"] for o in v2["outputs"]}
    assert set(stream) == set(exactly_once) == set(ids) == set(batch.index) == set(on_dask.index)
    for i, event_id in enumerate(ids):
        expected = batch.at[event_id, "proba_1"]
        assert on_dask.at[event_id, "proba_1"] == expected
        assert stream[event_id]["probabilities"]["1"] == expected
        assert exactly_once[event_id]["probabilities"]["1"] == expected
        assert simple["results"][i]["probabilities"]["1"] == expected
        assert v2_out["proba_1"][i] == expected
        label = int(batch.at[event_id, "prediction"])
        assert stream[event_id]["prediction"] == simple["results"][i]["prediction"] == v2_out["prediction"][i] == label
    assert single["probabilities"]["1"] == batch.at[ids[7], "proba_1"]
    versions = {s["model_version"] for s in stream.values()} | {r["model_version"] for r in simple["results"]}
    v = scorer.version
    assert versions == {v} and set(v2_out["model_version"]) == {v} and v2["model_version"] == str(v)
    assert set(batch["model_version"]) == set(on_dask["model_version"]) == {v}
    # and bit for bit what scikit-learn's own predict_proba gives (MLflow's own model, for the imported one)
    model_itself = theirs if theirs is not None else scorer.bundle.pipeline
    sklearn_proba = model_itself.predict_proba(features[list(synthetic.FEATURES)])[:, 1]
    assert np.array_equal(batch.loc[ids, "proba_1"].to_numpy(), sklearn_proba)


def test_promote_and_rollback_under_requests_fail_no_request(stream_settings, bundle, tmp_path):
    settings = stream_settings()
    registry = Registry(settings.registry_dir)
    registry.register(bundle)
    server, url = serve(settings, tmp_path, "--workers", "2")
    record = as_records(synthetic.generate(1, seed=3, with_target=False).drop(columns=[synthetic.ID_COLUMN]))[0]
    seen, failures, stop = [], [], threading.Event()

    def hammer():
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            status, body = post(f"{url}/predict", record)
            (seen if status == 200 else failures).append(body.get("model_version", body))

    client = threading.Thread(target=hammer)
    try:
        client.start()
        wait_for(lambda: len(seen) >= 20 or failures, timeout=30, what="requests answered before the promotion")
        registry.promote(2)
        wait_for(lambda: seen[-20:].count(2) == 20, timeout=30, what="every worker to follow the promotion")
        registry.rollback()
        wait_for(lambda: seen[-20:].count(1) == 20, timeout=30, what="every worker to follow the rollback")
        stop.set()
        client.join()
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            exposition = response.read().decode()
    finally:
        stop.set()
        client.join()
        server.stop()
    assert failures == []
    served = {
        version: float(line.rsplit(" ", 1)[1])
        for version in ("1", "2")
        for line in exposition.splitlines()
        if line.startswith(
            f'scorepipe_http_requests_total{{endpoint="/predict",model_version="{version}",status="200"}}'
        )
    }
    assert sum(served.values()) == len(seen)  # both workers' counts, from whichever worker answered
    assert served["1"] == seen.count(1) and served["2"] == seen.count(2)
    assert 'scorepipe_model_info{alias="champion",version="1"} 1.0' in exposition
    changes = [v for i, v in enumerate(seen) if i == 0 or v != seen[i - 1]]
    assert changes[0] == 1 and 2 in changes and changes[-1] == 1
    assert len(seen) > 40  # requests kept coming across both moves


def test_a_kserve_v2_client_works_against_the_server(make_registry, tmp_path, bundle):
    """Triton's HTTP client speaks the Open Inference Protocol V2 (the KServe protocol): metadata and infer."""
    import tritonclient.http as v2

    settings = Settings(home=tmp_path / "home", registry=make_registry().root)
    server, url = serve(settings, tmp_path)
    try:
        client = v2.InferenceServerClient(url=url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("scorepipe")
        metadata = client.get_model_metadata("scorepipe")
        assert [i["name"] for i in metadata["inputs"]] == bundle.schema.names
        frame = synthetic.generate(20, seed=93, with_target=False).drop(columns=[synthetic.ID_COLUMN])
        inputs = []
        for spec in bundle.schema.features:
            column = frame[spec.name]
            if spec.kind == "numeric":
                tensor = v2.InferInput(spec.name, [len(frame)], "FP64")
                tensor.set_data_from_numpy(column.to_numpy(dtype=np.float64), binary_data=False)
            else:
                tensor = v2.InferInput(spec.name, [len(frame)], "BYTES")
                tensor.set_data_from_numpy(column.to_numpy(dtype=object), binary_data=False)
            inputs.append(tensor)
        outputs = [v2.InferRequestedOutput(n, binary_data=False) for n in ("proba_1", "prediction", "model_version")]
        result = client.infer("scorepipe", inputs, request_id="triton-1", outputs=outputs)
        client.close()
    finally:
        server.stop()
    expected = Scorer(bundle, 1).score(frame)
    assert result.get_response()["id"] == "triton-1"
    assert result.as_numpy("proba_1").tolist() == expected["proba_1"].tolist()
    assert result.as_numpy("prediction").tolist() == expected["prediction"].astype(int).tolist()
    assert set(result.as_numpy("model_version").tolist()) == {1}
