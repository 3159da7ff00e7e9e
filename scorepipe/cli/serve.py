"""``scorepipe serve``: online scoring over HTTP (Open Inference Protocol V2 and the JSON API)."""

from __future__ import annotations

import argparse

from scorepipe.render import (
    console,
)
from scoring import Settings


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import logging
    import os

    import uvicorn

    # One OpenMP thread per request: concurrent requests would otherwise fight over both cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    following = "following" if args.model in ("champion", "challenger", "latest") else "pinned to"
    auth = "API key required" if settings.api_key else "no API key"
    console.print(
        f"serving {following} {args.model} on http://{args.host}:{args.port} with {args.workers} worker(s) ({auth}): "
        f"/v2/models/{settings.serve_model_name}/infer, /predict, /predict_batch, /metrics",
        soft_wrap=True,
    )
    if args.workers > 1:
        import shutil

        # Every worker writes its metrics here, so any worker's /metrics reports the whole server.
        metrics_dir = settings.home / "serve-metrics" / str(args.port)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        os.environ.update({**settings.as_env(), "SCOREPIPE_SERVE_MODEL": args.model})
        uvicorn.run(
            "serving.app:app_from_env", factory=True, host=args.host, port=args.port, workers=args.workers,
            log_level="warning",
        )  # fmt: skip
        return 0
    from serving.app import build_app

    app, models = build_app(settings, args.model)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        models.stop()
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``scorepipe`` parser."""
    serve = commands.add_parser("serve", help="online scoring over HTTP: Open Inference Protocol V2 and JSON")
    serve.add_argument("--model", default="champion", help="alias to follow (hot reload) or version to pin")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.set_defaults(handler=cmd_serve)
