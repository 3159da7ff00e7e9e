"""``scorepipe serve``: online scoring over HTTP (Open Inference Protocol V2 and the JSON API)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from scorepipe.render import console

if TYPE_CHECKING:
    from scorepipe.settings import Settings


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from serving.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from integrations.stores import model_stores
    from scorepipe.serve_app import payload_log_for
    from scoring import Registry
    from scoring.model_source import open_source

    if args.shadow:
        settings = settings.model_copy(update={"serve_shadow": args.shadow})
    if args.payload_topic:
        settings = settings.model_copy(update={"serve_payload_topic": args.payload_topic})

    following = (
        "following"
        if open_source(Registry(settings.registry_dir), args.model, settings, model_stores()).follows
        else "pinned to"
    )
    auth = "API key required" if settings.api_key else "no API key"
    scheme = "https" if args.ssl_certfile else "http"
    console.print(
        f"serving {following} {args.model} on {scheme}://{args.host}:{args.port} "
        f"with {args.workers} worker(s) ({auth}): "
        f"/v2/models/{settings.serve_model_name}/infer, /predict, /predict_batch, /feedback, /metrics"
        + (f"; shadow {settings.serve_shadow} scored off the request path" if settings.serve_shadow else "")
        + (f"; payloads logged to Kafka topic {settings.serve_payload_topic}" if settings.serve_payload_topic else ""),
        soft_wrap=True,
    )
    serve(
        settings,
        args.model,
        host=args.host,
        port=args.port,
        workers=args.workers,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        payload_log=payload_log_for(settings),
    )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``scorepipe`` parser."""
    serve = commands.add_parser("serve", help="online scoring over HTTP: Open Inference Protocol V2 and JSON")
    serve.add_argument(
        "--model",
        default="champion",
        help="alias to follow (hot reload) or version to pin; mlflow:models:/NAME@ALIAS follows an MLflow alias",
    )
    serve.add_argument("--shadow", help="also score this alias or version (e.g. challenger), off the request path")
    serve.add_argument(
        "--payload-topic", help="log each scoring request and response to this Kafka topic (the stream's settings)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.add_argument("--ssl-certfile", type=Path, help="serve HTTPS with this certificate (PEM, chain first)")
    serve.add_argument("--ssl-keyfile", type=Path, help="the certificate's private key (PEM, unencrypted)")
    serve.set_defaults(handler=cmd_serve)
