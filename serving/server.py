"""Running the API on uvicorn: one process, or ``workers`` processes sharing metrics.

uvicorn starts worker processes by importing a factory, so several workers get their settings
and model from ``SCOREPIPE_*`` variables handed to them here; each follows the alias itself.
"""

from __future__ import annotations

import os
import shutil

import uvicorn

from scoring import Settings
from serving.app import build_app

MODEL_VARIABLE = "SCOREPIPE_SERVE_MODEL"  # the alias or version each worker process follows


def serve(settings: Settings, model: str, *, host: str, port: int, workers: int = 1) -> None:
    """Serve until interrupted; with several workers, any worker's ``/metrics`` reports the whole server."""
    # One OpenMP thread per request: concurrent requests would otherwise fight over both cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if workers > 1:
        metrics_dir = settings.home / "serve-metrics" / str(port)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # every worker writes its metrics here
        os.environ.update({**settings.as_env(), MODEL_VARIABLE: model})
        uvicorn.run("serving.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level="warning")  # fmt: skip
        return
    app, models = build_app(settings, model)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        models.stop()
