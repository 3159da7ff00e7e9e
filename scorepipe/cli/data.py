"""``scorepipe data``: synthetic training data, nightly partitions and their delayed labels."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from scorepipe.render import console

if TYPE_CHECKING:
    from scorepipe.settings import Settings


def cmd_data_generate(args: argparse.Namespace, settings: Settings) -> int:
    from scorepipe.demo_data import write_dataset

    path = write_dataset(args.out, args.rows, seed=args.seed, drifted=args.drifted, with_target=not args.no_target)
    console.print(f"wrote {args.rows:,} {'drifted ' if args.drifted else ''}rows to {path}")
    return 0


def cmd_data_incoming(args: argparse.Namespace, settings: Settings) -> int:
    from scorepipe.demo_data import write_incoming
    from scoring.storage import Location

    folder = Location(args.out) / f"date={args.date}"
    paths = write_incoming(
        folder,
        files=args.files,
        rows_per_file=args.rows,
        seed=args.seed,
        drifted=args.drifted,
        bad_rows=args.bad_rows,
        corrupt_file=args.corrupt,
    )
    console.print(f"wrote {len(paths)} files ({args.files * args.rows:,} rows) to {folder}")
    return 0


def cmd_data_labels(args: argparse.Namespace, settings: Settings) -> int:
    from scorepipe.demo_data import write_labels

    path = write_labels(args.out, args.rows, seed=args.seed, drifted=args.drifted, fraction=args.fraction)
    console.print(
        f"wrote the true labels of {args.fraction:.0%} of {args.rows:,} transactions (seed {args.seed}) to {path}"
    )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``scorepipe`` parser."""
    data = commands.add_parser("data", help="generate synthetic data").add_subparsers(title="data commands")
    generate = data.add_parser("generate", help="a labelled training set (or drifted / unlabelled data)")
    generate.add_argument("--rows", type=int, default=100_000)
    generate.add_argument("--out", required=True, help="a Parquet file (local or s3://bucket/key)")
    generate.add_argument("--seed", type=int, default=42)
    generate.add_argument("--drifted", action="store_true", help="shift amounts, channels, distances")
    generate.add_argument("--no-target", action="store_true", help="leave out the is_fraud label")
    generate.set_defaults(handler=cmd_data_generate)
    incoming = data.add_parser("incoming", help="a date partition of unlabelled Parquet files to score")
    incoming.add_argument("--out", default="data/incoming", help="a folder (local or s3://bucket/prefix)")
    incoming.add_argument("--date", default=datetime.now(UTC).date().isoformat())
    incoming.add_argument("--files", type=int, default=4)
    incoming.add_argument("--rows", type=int, default=25_000, help="rows per file")
    incoming.add_argument("--seed", type=int, default=7)
    incoming.add_argument("--drifted", action="store_true")
    incoming.add_argument("--bad-rows", type=int, default=0, help="rows spoiled on purpose, spread over the files")
    incoming.add_argument("--corrupt", action="store_true", help="add one file that is not Parquet")
    incoming.set_defaults(handler=cmd_data_incoming)
    labels = data.add_parser(
        "labels", help="the delayed true labels of generated transactions (the generator knows them)"
    )
    labels.add_argument("--out", required=True, help="a Parquet file: transaction_id, label, label_time (or s3://)")
    labels.add_argument(
        "--rows", type=int, default=100_000, help="as many rows as `data incoming` wrote (files x rows)"
    )
    labels.add_argument("--seed", type=int, default=7, help="the seed `data incoming` used")
    labels.add_argument("--drifted", action="store_true")
    labels.add_argument("--fraction", type=float, default=1.0, help="share of rows whose label has arrived, 0..1")
    labels.set_defaults(handler=cmd_data_labels)
