"""Following an MLflow alias on a real tracking server: the watcher, a batch run, and failure to reach it."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pyarrow.parquet as pq
import pytest

from batch.engine import METADATA_KEY
from batch.run import BatchRequest, score_batch
from devservers.process import free_port
from integrations.mlflow.models import MLflowImportError
from integrations.stores import model_stores
from scorepipe.cli import main
from scorepipe.settings import Settings
from scoring import Registry, synthetic
from scoring.model_source import resolve_once
from scoring.watcher import watch_models
from tests.helpers import wait_for
from tests.integrations.mlflow.helpers import TREES, fitted, log

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    frame = synthetic.generate(3000, seed=21)
    path = tmp_path_factory.mktemp("training") / "train.parquet"
    frame.to_parquet(path)
    return frame, path


def new_version(server, client, name, model, features, alias="champion"):
    """Log and register a version of ``name``, then point ``alias`` at it, as a team's training job would."""
    log(server, model, features, name=name, skops_trusted_types=TREES)
    version = max(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    client.set_registered_model_alias(name, alias, str(version))
    return version


def test_the_watcher_follows_an_mlflow_alias_and_refuses_what_would_not_fit(
    mlflow_server, train, tmp_path, monkeypatch
):
    import mlflow

    frame, path = train
    features = frame[list(synthetic.FEATURES)]
    name = f"fraud-{uuid.uuid4().hex[:6]}"
    client = mlflow.MlflowClient(mlflow_server.tracking_uri)
    log(mlflow_server, fitted(frame), features, name=name, dataset=path, skops_trusted_types=TREES)
    client.set_registered_model_alias(name, "champion", "1")

    # The first import names the label; its reference rows come from the dataset logged with the run.
    monkeypatch.setenv("SCOREPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    assert main(["models", "import", f"models:/{name}@champion", "--target", synthetic.TARGET]) == 0
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=mlflow_server.tracking_uri, model_check_seconds=0.2)
    registry = Registry(settings.registry_dir)
    assert "dataset" in registry.info(1).note and registry.info(1).metrics["roc_auc"] > 0.75
    assert len(registry.load(1).bundle.reference) == len(frame)  # all 3,000 logged rows, under reference_rows

    events = []
    watcher, _ = watch_models(
        settings, f"mlflow:models:/{name}@champion", listeners=[events.append], stores=model_stores()
    )
    try:
        assert watcher.follows and watcher.version == 1 and len(registry.versions()) == 1  # found, not re-imported

        new_version(mlflow_server, client, name, fitted(frame, seed=8), features)
        wait_for(lambda: watcher.current().version == 2, timeout=20, what="the watcher to import MLflow v2")
        assert watcher.current().bundle.info["mlflow"]["model_version"] == "2"
        assert registry.info(2).origin["version"] == "2" and registry.info(2).metrics["roc_auc"] > 0.75
        assert events[-1].ok and events[-1].source_version == f"MLflow {name} v2"

        other, _ = watch_models(
            settings, f"mlflow:models:/{name}@champion", stores=model_stores()
        )  # a second process, same registry
        assert other.version == 2 and len(registry.versions()) == 2
        other.stop()

        numeric = [c for c in synthetic.FEATURES if frame[c].dtype != object]
        new_version(mlflow_server, client, name, fitted(frame, features=numeric), frame[numeric])
        wait_for(lambda: watcher.failures == 1, timeout=20, what="MLflow v3 (another signature) refused")
        assert f"MLflow {name} v3" in watcher.last_error and "features differ" in watcher.last_error

        shuffled = np.random.default_rng(1).permutation(frame[synthetic.TARGET].to_numpy())
        new_version(mlflow_server, client, name, fitted(frame, labels=shuffled), features)
        wait_for(lambda: watcher.failures == 2, timeout=20, what="MLflow v4 (below the gate) refused")
        assert "below the quality gate" in watcher.last_error and watcher.current().version == 2

        client.set_registered_model_alias(name, "champion", "1")
        wait_for(lambda: watcher.current().version == 1, timeout=20, what="the watcher to follow the alias back")
    finally:
        watcher.stop()
    assert [(e.ok, e.new_version) for e in events] == [(True, 2), (False, None), (False, None), (True, 1)]
    assert len(registry.versions()) == 3  # v3 was registered, then refused for its features; v4 never stored


def test_a_batch_run_imports_an_mlflow_model_and_records_its_version(mlflow_server, train, tmp_path):
    import mlflow

    frame, path = train
    name = f"batch-{uuid.uuid4().hex[:6]}"
    log(mlflow_server, fitted(frame), frame[list(synthetic.FEATURES)], name=name, dataset=path,
        skops_trusted_types=TREES)  # fmt: skip
    mlflow.MlflowClient(mlflow_server.tracking_uri).set_registered_model_alias(name, "nightly", "1")
    inputs = tmp_path / "in" / "date=2026-11-30"
    inputs.mkdir(parents=True)
    synthetic.generate(400, seed=5, with_target=False).to_parquet(inputs / "part-0.parquet")
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=mlflow_server.tracking_uri)
    ref = f"mlflow:models:/{name}@nightly"
    request = BatchRequest(str(tmp_path / "in"), str(tmp_path / "out"), model=ref, shadow=ref)
    summary = score_batch(settings, request, say=lambda _: None, warn=pytest.fail)
    assert summary.rows_scored + summary.rows_rejected == 400 and summary.model_version == summary.shadow_version == 1
    assert (summary.mlflow["model_name"], summary.mlflow["model_version"]) == (name, "1")
    output = tmp_path / "out" / "date=2026-11-30" / "part-0.parquet"
    recorded = json.loads(pq.read_schema(output).metadata[METADATA_KEY])
    assert recorded["mlflow"]["model_version"] == "1" and recorded["model_version"] == 1
    assert score_batch(settings, request, say=lambda _: None).files[0].status == "skipped"  # same model: current
    assert len(Registry(settings.registry_dir).versions()) == 1


def test_an_unreachable_tracking_server_is_named_within_seconds(tmp_path):
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(MLflowImportError, match="models:/fraud@champion: .*(Connection|refused|Max retries)"):
        resolve_once(Registry(settings.registry_dir), "mlflow:models:/fraud@champion", settings, model_stores())
    assert time.monotonic() - started < 15
