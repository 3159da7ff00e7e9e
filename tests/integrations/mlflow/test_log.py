"""scorepipe's runs logged back to a real MLflow server, checked through the server's REST API."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from devservers.process import free_port
from integrations.stores import model_stores
from scorepipe.cli import main
from scorepipe.cli.options import DRIFT_EXIT_CODE
from scorepipe.settings import Settings
from scoring import Registry, synthetic
from scoring.model_source import resolve_once

pytestmark = pytest.mark.integration


class Api:
    """The tracking server's REST API (``/api/2.0/mlflow``), asked directly rather than through the client."""

    def __init__(self, url):
        self.http = httpx.Client(base_url=f"{url}/api/2.0/mlflow", timeout=10)

    def get(self, endpoint, **params):
        response = self.http.get(endpoint, params=params)
        response.raise_for_status()
        return response.json()

    def runs(self, experiment):
        found = self.get("/experiments/get-by-name", experiment_name=experiment)["experiment"]
        response = self.http.post("/runs/search", json={"experiment_ids": [found["experiment_id"]]})
        response.raise_for_status()
        return response.json().get("runs", [])


def tags(run):
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def metrics(run):
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


@pytest.fixture
def logging_to(mlflow_server, tmp_path, monkeypatch):
    """A scorepipe home logging to the test server, under an experiment and a model name of its own."""
    suffix = uuid.uuid4().hex[:6]
    names = {"experiment": f"scorepipe-{suffix}", "model": f"scorepipe-{suffix}"}
    monkeypatch.setenv("SCOREPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    monkeypatch.setenv("SCOREPIPE_MLFLOW_EXPERIMENT", names["experiment"])
    monkeypatch.setenv("SCOREPIPE_MLFLOW_MODEL_NAME", names["model"])
    return Api(mlflow_server.tracking_uri), names


def test_train_logs_its_run_registers_the_model_and_moves_the_alias(logging_to, tmp_path):
    api, names = logging_to
    assert main(["train", "--rows", "12000", "--mlflow-alias", "champion"]) == 0

    [run] = api.runs(names["experiment"])
    assert tags(run)["scorepipe.kind"] == "train"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["train_rows"] == "12000" and params["model.learning_rate"] == "0.08"
    assert metrics(run)["roc_auc"] > 0.75
    version = api.get("/registered-models/alias", name=names["model"], alias="champion")["model_version"]
    assert version["version"] == "1" and version["run_id"] == run["info"]["run_id"]
    version_tags = {t["key"]: t["value"] for t in version.get("tags", [])}
    assert version_tags == {"scorepipe.version": "1", "scorepipe.quality_gate": "passed"}
    artifacts = api.get("/artifacts/list", run_id=run["info"]["run_id"], path="scorepipe")
    assert sorted(f["path"] for f in artifacts["files"]) == ["scorepipe/reference.parquet", "scorepipe/schema.json"]

    # The local version records where it went, so following the MLflow alias finds it without an import.
    settings = Settings()
    registry = Registry(settings.registry_dir)
    assert registry.info(1).origin["version"] == "1" and registry.info(1).aliases == ("champion",)
    assert resolve_once(registry, f"mlflow:models:/{names['model']}@champion", settings, model_stores()) == 1
    assert len(registry.versions()) == 1

    # Another scorepipe home imports it with the reference rows train logged: nothing else to pass.
    other = Settings(home=tmp_path / "elsewhere")
    assert resolve_once(Registry(other.registry_dir), f"mlflow:models:/{names['model']}/1", other, model_stores()) == 1
    imported = Registry(other.registry_dir).load(1).bundle
    assert imported.info["mlflow"]["reference"] == "the reference rows scorepipe train logged with the run"
    assert imported.schema == registry.load(1).bundle.schema


def test_drift_and_performance_reports_are_runs_tied_to_the_model_version(logging_to, tmp_path):
    api, names = logging_to
    assert main(["train", "--rows", "12000"]) == 0
    truth = synthetic.generate(3000, seed=17, drifted=True)
    night = tmp_path / "in" / "date=2026-11-29"
    night.mkdir(parents=True)
    truth.drop(columns=[synthetic.TARGET]).to_parquet(night / "part-0.parquet")
    labels = tmp_path / "labels.parquet"
    truth[[synthetic.ID_COLUMN, synthetic.TARGET]].rename(columns={synthetic.TARGET: "label"}).to_parquet(labels)
    assert main(["score", str(tmp_path / "in"), str(tmp_path / "out")]) == 0
    scored = str(tmp_path / "out" / "date=2026-11-29")
    assert main(["drift", "--current", scored]) == DRIFT_EXIT_CODE  # a drifted night
    assert main(["performance", "--scored", scored, "--labels", str(labels)]) in (0, DRIFT_EXIT_CODE)

    runs = {tags(r)["scorepipe.kind"]: r for r in api.runs(names["experiment"])}
    assert set(runs) == {"train", "drift-report", "performance-report"}
    drift, performance = runs["drift-report"], runs["performance-report"]
    assert tags(drift)["scorepipe.mlflow_model"] == f"{names['model']}/1"
    assert tags(drift)["scorepipe.verdict"] == "drift" and metrics(drift)["drift_detected"] == 1.0
    assert 0 < metrics(performance)["performance_roc_auc"] <= 1
    for run, stem in ((drift, "drift-date=2026-11-29"), (performance, "performance-date=2026-11-29")):
        files = api.get("/artifacts/list", run_id=run["info"]["run_id"], path="report")["files"]
        assert sorted(f["path"] for f in files) == [f"report/{stem}.html", f"report/{stem}.json"]
        assert run["info"]["status"] == "FINISHED"
    version = api.get("/model-versions/get", name=names["model"], version="1")["model_version"]
    version_tags = {t["key"]: t["value"] for t in version.get("tags", [])}
    assert version_tags["scorepipe.last_drift_report_run"] == drift["info"]["run_id"]
    assert version_tags["scorepipe.last_performance_report_run"] == performance["info"]["run_id"]
    model_id = version["source"].removeprefix("models:/")
    logged = api.http.get(f"/logged-models/{model_id}").json()["model"]
    linked = {m["key"] for m in logged["data"]["metrics"]}
    assert {"roc_auc", "drift_share_drifted_features", "performance_roc_auc"} <= linked  # beside the model


def test_logging_back_can_be_turned_off_and_an_unreachable_server_never_fails_training(logging_to, monkeypatch, capsys):
    api, names = logging_to
    monkeypatch.setenv("SCOREPIPE_MLFLOW_LOG", "false")
    assert main(["train", "--rows", "6000"]) == 0
    assert api.http.get("/experiments/get-by-name", params={"experiment_name": names["experiment"]}).status_code == 404

    monkeypatch.setenv("SCOREPIPE_MLFLOW_LOG", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    assert main(["train", "--rows", "6000"]) == 0
    assert time.monotonic() - started < 30
    assert "not logged to MLflow" in capsys.readouterr().out
    assert [v.origin for v in Registry(Settings().registry_dir).versions()] == [None, None]
