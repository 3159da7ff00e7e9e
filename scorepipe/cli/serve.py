"""``scorepipe serve``: online scoring over HTTP (Open Inference Protocol V2 and the JSON API)."""

from __future__ import annotations

import argparse

from scorepipe.render import console
from scoring import Settings


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from serving.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    following = "following" if args.model in ("champion", "challenger", "latest") else "pinned to"
    auth = "API key required" if settings.api_key else "no API key"
    console.print(
        f"serving {following} {args.model} on http://{args.host}:{args.port} with {args.workers} worker(s) ({auth}): "
        f"/v2/models/{settings.serve_model_name}/infer, /predict, /predict_batch, /metrics",
        soft_wrap=True,
    )
    serve(settings, args.model, host=args.host, port=args.port, workers=args.workers)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``scorepipe`` parser."""
    serve = commands.add_parser("serve", help="online scoring over HTTP: Open Inference Protocol V2 and JSON")
    serve.add_argument("--model", default="champion", help="alias to follow (hot reload) or version to pin")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.set_defaults(handler=cmd_serve)
