"""The project's MLflow tracking server: a real `mlflow server` from its own venv, kept across restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid

import pytest

from devservers.mlflow import MLflowServer, ensure_server_venv
from devservers.process import port_in_use

pytestmark = pytest.mark.integration


def api(server: MLflowServer, path: str, body: dict | None = None) -> dict:
    url = f"{server.tracking_uri}/api/2.0/mlflow/{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_the_server_answers_its_rest_api_and_keeps_models_across_a_restart(mlflow_server, tmp_path):
    name = f"fraud-{uuid.uuid4().hex[:6]}"
    api(mlflow_server, "registered-models/create", {"name": name})
    found = api(mlflow_server, "registered-models/search?" + urllib.parse.urlencode({"filter": f"name = '{name}'"}))
    assert [m["name"] for m in found["registered_models"]] == [name]

    home = tmp_path / "mlflow"
    first = MLflowServer(home).start()
    port = first.port
    try:
        api(first, "registered-models/create", {"name": name})
    finally:
        first.stop()
    assert not port_in_use(port)  # the whole process group is gone
    again = MLflowServer(home).start()
    try:
        assert again.port == port
        assert api(again, "registered-models/get?name=" + name)["registered_model"]["name"] == name
    finally:
        again.stop()


def test_mlflow_up_status_down_from_the_cli(tmp_path):
    ensure_server_venv()
    env = {**os.environ, "SCOREPIPE_HOME": str(tmp_path / "sp")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "scorepipe.cli", "mlflow", *args], env=env,
                              capture_output=True, text=True, timeout=180)  # fmt: skip

    try:
        up = cli("up")
        assert up.returncode == 0, up.stdout + up.stderr
        uri = up.stdout.split("export MLFLOW_TRACKING_URI=")[1].split()[0]
        status = cli("status")
        assert status.returncode == 0 and uri in status.stdout
        with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
            assert response.status == 200
    finally:
        down = cli("down")
    assert down.returncode == 0 and "stopped MLflow" in down.stdout
    assert cli("status").returncode == 1
