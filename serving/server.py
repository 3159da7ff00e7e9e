"""Running the API on uvicorn: one process, or ``workers`` processes sharing metrics.

uvicorn starts worker processes by importing a factory, so several workers get their settings
and model from ``SCOREPIPE_*`` variables handed to them here; each follows the alias itself.
"""

from __future__ import annotations

import os
import shutil
import ssl
from collections.abc import Callable
from pathlib import Path

import uvicorn

from monitoring.metrics import ScoringMetrics
from monitoring.payload import PayloadLog
from scoring import SettingsError
from serving.app import build_app
from serving.settings import ServeSettings


def serve(
    settings: ServeSettings,
    model: str,
    *,
    host: str,
    port: int,
    workers: int = 1,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
    ssl_keyfile_password: str | None = None,
    payload_log: Callable[[ScoringMetrics], PayloadLog] | None = None,
) -> None:
    """Serve until interrupted; with several workers, any worker's ``/metrics`` reports the whole server.

    With ``ssl_certfile`` and ``ssl_keyfile`` it serves HTTPS (uvicorn's TLS); both files are
    checked first, so a wrong path is named before anything starts. ``payload_log`` builds the one
    process's payload log (workers build theirs in the entry point's factory).
    """
    tls: dict[str, str] = {}
    if ssl_certfile is not None or ssl_keyfile is not None:
        tls = tls_options(ssl_certfile, ssl_keyfile, ssl_keyfile_password)
    # One OpenMP thread per request: concurrent requests would otherwise fight over both cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if workers > 1:
        metrics_dir = settings.home / "serve-metrics" / str(port)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # every worker writes its metrics here
        shared: dict[str, object] = {"serve_model": model}
        if settings.serve_rate_limit and not settings.serve_rate_limit_storage:
            shared["serve_rate_limit_storage"] = f"sqlite:///{metrics_dir / 'rate-limits.sqlite'}"  # one count
        os.environ.update(settings.model_copy(update=shared).as_env())
        uvicorn.run("scorepipe.serve_app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", ssl_certfile=tls.get("ssl_certfile"), ssl_keyfile=tls.get("ssl_keyfile"),
                    ssl_keyfile_password=tls.get("ssl_keyfile_password"))  # fmt: skip
        return
    app, models = build_app(settings, model, payload_log=payload_log)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", ssl_certfile=tls.get("ssl_certfile"),
                    ssl_keyfile=tls.get("ssl_keyfile"),
                    ssl_keyfile_password=tls.get("ssl_keyfile_password"))  # fmt: skip
    finally:
        models.stop()


def tls_options(certfile: Path | None, keyfile: Path | None, password: str | None) -> dict[str, str]:
    """The TLS options for uvicorn, after loading the pair once: a missing file or a mismatched key is named."""
    if certfile is None or keyfile is None:
        raise SettingsError("HTTPS needs both --ssl-certfile and --ssl-keyfile")
    for option, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if not Path(path).is_file():
            raise SettingsError(f"{option}: no such file {path}")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile, password)
    except ssl.SSLError as exc:
        raise SettingsError(
            f"--ssl-certfile {certfile} and --ssl-keyfile {keyfile} cannot be used: {exc.reason}"
        ) from None
    options = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}
    if password is not None:
        options["ssl_keyfile_password"] = password
    return options
