"""A real MLflow tracking server for local runs and tests, from its own virtualenv under ``.cache``.

Full ``mlflow`` cannot live in the project's venv (it pins pyarrow below the lock's version), so
the server gets a venv of its own, built once (``ensure_server_venv``), as the Kafka and S3Proxy
jars are. A server lives in one folder (``home``): a SQLite backend store, local artifacts, and
its port in ``identity.json``, so stopping and starting it keeps every run and registered model.
It listens on 127.0.0.1 with one worker and no job runners (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION``
off: otherwise it starts seven job consumers, takes twice as long and 1-2 GB). It runs in its own
process group and is stopped by it, children included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devservers.process import LocalServer, ServiceError, free_port, http_ok, port_in_use, prepared_once, read_recorded

REPO = Path(__file__).resolve().parent.parent
MLFLOW_VERSION = "3.17.2"
SERVER_VENV = REPO / ".cache" / "mlflow-server"
IDENTITY_FILE = "identity.json"
INSTALL_TIMEOUT_S = 900


def ensure_server_venv(venv: Path = SERVER_VENV, version: str = MLFLOW_VERSION) -> Path:
    """The ``mlflow`` executable of the server's own venv, built with ``mlflow==version`` if missing."""
    mlflow = venv / "bin" / "mlflow"
    marker = venv / ".installed"
    if mlflow.exists() and marker.exists() and marker.read_text().strip() == version:
        return mlflow
    with prepared_once(venv):
        if mlflow.exists() and marker.exists() and marker.read_text().strip() == version:
            return mlflow  # another process built it while this one waited
        _build_venv(venv, version)
    return mlflow


def _build_venv(venv: Path, version: str) -> None:
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"mlflow=={version}"],
    ]
    for step in steps:
        try:
            result = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"building the MLflow server's venv timed out: {' '.join(step)}") from exc
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-2000:]
            raise ServiceError(f"building the MLflow server's venv in {venv} failed ({' '.join(step[2:])}):\n{tail}")
    (venv / ".installed").write_text(version)


class MLflowServer(LocalServer):
    """One ``mlflow server`` with a SQLite store and local artifacts under ``home``, on a loopback port."""

    START_TIMEOUT_S = 120.0

    def __init__(self, home: Path, *, port: int | None = None) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        identity = read_recorded(home / IDENTITY_FILE) or {}
        self.port = port or identity.get("port") or free_port()
        mlflow = ensure_server_venv()
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        for name in [n for n in env if n.startswith("MLFLOW_TRACKING_")]:
            del env[name]  # the server is the tracking server: a client variable would point it elsewhere
        super().__init__(
            "mlflow server",
            [
                str(mlflow),
                "server",
                "--backend-store-uri",
                f"sqlite:///{home / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.artifacts_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            env=env,
            log_path=home / "mlflow.log",
            cwd=home,
        )

    @property
    def tracking_uri(self) -> str:
        return self.url

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    def configure(self) -> None:
        if port_in_use(self.port):
            raise ServiceError(f"port {self.port} on 127.0.0.1 is taken: is another MLflow server using {self.home}?")
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        (self.home / IDENTITY_FILE).write_text(json.dumps({"port": self.port}, indent=2))

    def ready(self) -> bool:
        return http_ok(f"{self.tracking_uri}/health")

    def describe(self) -> dict[str, object]:
        return {"tracking_uri": self.tracking_uri}
