"""``scorepipe drift`` and ``scorepipe performance``: Evidently reports with exit codes to act on."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from scorepipe.cli.options import DRIFT_EXIT_CODE, label_options
from scorepipe.render import console, print_drift, print_performance

if TYPE_CHECKING:
    from scorepipe.settings import Settings


def cmd_drift(args: argparse.Namespace, settings: Settings) -> int:
    from drift.report import build_report
    from monitoring.publish import publish_report

    since = _since(args.since) if args.since else None
    with console.status(f"building the Evidently drift report for {args.current}"):
        summary = build_report(args.current, args.out or settings.reports_dir, settings, model=args.model, since=since)
    print_drift(summary)
    publish_report(settings, "drift-report", summary)
    return DRIFT_EXIT_CODE if summary.drift_detected else 0


def _since(text: str) -> datetime:
    """An ISO time, or a window back from now such as 30m, 6h, 2d."""
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_performance(args: argparse.Namespace, settings: Settings) -> int:
    from monitoring.publish import publish_report
    from performance.report import build_performance_report

    since = _since(args.since) if args.since else None
    with console.status(f"joining labels to {args.scored} and building the Evidently classification report"):
        summary = build_performance_report(
            args.scored,
            args.labels,
            args.out or settings.reports_dir,
            settings,
            id_column=args.id_column,
            label_column=args.label_column,
            since=since,
            name=args.name,
        )
    print_performance(summary)
    publish_report(settings, "performance-report", summary)
    return DRIFT_EXIT_CODE if summary.degraded else 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``scorepipe`` parser."""
    drift = commands.add_parser("drift", help="Evidently drift report of scored data against the training reference")
    drift.add_argument(
        "--current", required=True, help="scored Parquet: a file, a partition folder, a glob, a live window"
    )
    drift.add_argument("--since", help="only rows scored since: ISO time or 30m / 6h / 2d (live windows)")
    drift.add_argument("--model", help="version or alias (default: the version that scored the data)")
    drift.add_argument("--out", help="output folder or s3://bucket/prefix (default: SCOREPIPE_HOME/reports)")
    drift.set_defaults(handler=cmd_drift)

    performance = commands.add_parser("performance", help="model quality on scored rows whose labels arrived")
    performance.add_argument("--scored", required=True, help="scored Parquet: batch outputs or a live window")
    performance.add_argument("--labels", required=True, help="label Parquet: a file, folder or glob")
    label_options(performance)
    performance.add_argument("--since", help="only rows scored since: ISO time or 30m / 6h / 7d")
    performance.add_argument("--out", help="output folder or s3://bucket/prefix (default: SCOREPIPE_HOME/reports)")
    performance.add_argument("--name", help="report name: performance-NAME.html/.json (default: the scored folder's)")
    performance.set_defaults(handler=cmd_performance)
