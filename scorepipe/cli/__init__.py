"""``scorepipe``: one command line for training, the registry, batch scoring, streaming, serving, reports.

Each command group is a module with a ``register`` function adding its subcommands; handlers
take ``(args, settings)`` and return an exit code; rendering lives in ``scorepipe.render``.
"""

from __future__ import annotations

import argparse

from scorepipe.cli import batch, data, models, reports, serve, services, stream
from scorepipe.render import console
from scoring import ScoringError
from scoring.settings import load_settings

GROUPS = (data, models, batch, stream, serve, reports, services)


def parser() -> argparse.ArgumentParser:
    """The whole ``scorepipe`` argument parser (also used to check the README's examples)."""
    root = argparse.ArgumentParser(
        prog="scorepipe",
        description="One command line for training, the registry, batch scoring, streaming, serving and reports.",
    )
    commands = root.add_subparsers(title="commands")
    for group in GROUPS:
        group.register(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    arguments = parser()
    args = arguments.parse_args(argv)
    if not hasattr(args, "handler"):
        arguments.print_help()
        return 2
    try:
        settings = load_settings()
        return int(args.handler(args, settings) or 0)
    except ScoringError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 1
