"""``scorepipe``: one command line for training, the registry, batch scoring, streaming, serving, reports.

Each command group is a module with a ``register`` function adding its subcommands; handlers
take ``(args, settings)`` and return an exit code; rendering lives in ``scorepipe.render``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from scorepipe.cli import batch, canary, data, models, reports, serve, services, stream

GROUPS = (data, models, canary, batch, stream, serve, reports, services)


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
    with _stop_on_signals_from_now(args) if getattr(args, "stoppable", False) else nullcontext():
        # Only now, with the arguments parsed: `--help` and a mistyped option import no model library.
        from scorepipe.render import console
        from scorepipe.settings import load_settings
        from scoring import ScoringError

        try:
            settings = load_settings()
            return int(args.handler(args, settings) or 0)
        except ScoringError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            return 1


@contextmanager
def _stop_on_signals_from_now(args: argparse.Namespace) -> Iterator[None]:
    """A long-running command's stop event (``args.stopping``), set by SIGTERM or SIGINT from before its imports.

    Kubernetes sends SIGTERM at any moment, start-up included: the command then stops cleanly at its
    next step instead of dying mid-import. The previous handlers come back when it returns.
    """
    import signal
    import threading

    from streaming.process import stop_on_signals

    before = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    args.stopping = threading.Event()
    stop_on_signals(lambda *_: args.stopping.set())
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for number, handler in before.items():
                signal.signal(number, handler)
