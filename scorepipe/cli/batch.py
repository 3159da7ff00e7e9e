"""``scorepipe score`` and ``scorepipe compare``: the batch engine without a Prefect server, and shadow comparisons."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from scorepipe.cli.options import label_options
from scorepipe.render import console, print_comparison, print_outcomes, print_summary, progress_bar

if TYPE_CHECKING:
    from scorepipe.settings import Settings
    from scoring.storage import Location


def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    from batch.run import BatchRequest, score_batch
    from scoring.sources import discover_inputs

    total = sum(_row_count(p) for p in discover_inputs(args.input).files)
    request = BatchRequest(
        input=str(args.input),
        output=str(args.output),
        model=args.model,
        chunk_size=args.chunk_size,
        force=args.force,
        shadow=args.shadow,
        workers=args.workers,
        dask_address=args.dask_address,
    )
    with progress_bar("scoring") as progress:
        bar = progress.add_task("rows", total=total)
        summary = score_batch(settings, request, on_rows=lambda n: progress.advance(bar, n), say=console.print)
    print_summary(summary)
    summary.raise_for_failures()
    return 0


def _row_count(path: Location) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path.path, filesystem=path.fs).metadata.num_rows
    except (pa.ArrowException, OSError):
        return 0  # unreadable: the run quarantines it


def cmd_compare(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from scoring.compare import compare_outputs, find_shadow
    from scoring.storage import Location

    shadow = args.shadow or find_shadow(args.scored)
    pairs = compare_outputs(args.scored, shadow)
    summaries = [p.summary() for p in pairs]
    print_comparison(f"champion vs challenger: {args.scored} against {shadow}", summaries)
    out = Location(args.out or settings.reports_dir / f"compare-{Location(args.scored).name}.json")
    outcomes = None
    if args.labels:
        from performance.report import challenger_on_outcomes

        with console.status(f"judging both on the labels in {args.labels}"):
            outcomes = challenger_on_outcomes(
                args.scored,
                args.labels,
                settings,
                shadow=shadow,
                id_column=args.id_column,
                label_column=args.label_column,
            )
        if outcomes is None:
            console.print("no row labelled for both champion and challenger (or a model with more than two classes)")
        else:
            print_outcomes(outcomes)
    body = {"scored": str(args.scored), "shadow": str(shadow), "pairs": summaries, "outcomes": outcomes}
    out.write_text(json.dumps(body, indent=2))  # whole or not at all, local or s3://
    console.print(f"summary: {out}", soft_wrap=True)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``scorepipe`` parser."""
    score = commands.add_parser("score", help="score Parquet files now, without a Prefect server")
    score.add_argument("input", help="a Parquet file, a folder of partitions or a glob (local or s3://bucket/prefix)")
    score.add_argument("output", help="output folder (or s3://bucket/prefix)")
    score.add_argument("--model", default="champion", help="alias or version")
    score.add_argument("--chunk-size", type=int)
    score.add_argument("--force", action="store_true", help="re-score files whose output is current")
    score.add_argument("--shadow", help="also score with this alias or version (e.g. challenger) into _shadow/")
    score.add_argument(
        "--workers",
        type=int,
        help="score files in parallel on a Dask LocalCluster of N single-threaded workers (0: one per core; "
        "default: SCOREPIPE_BATCH_WORKERS or 1, one after another)",
    )
    score.add_argument("--dask-address", help="use an existing Dask scheduler instead (tcp://host:8786)")
    score.set_defaults(handler=cmd_score)

    compare = commands.add_parser("compare", help="champion vs shadow challenger on scored outputs or a live window")
    compare.add_argument("scored", help="champion outputs: a batch output folder/partition or a live window (or s3://)")
    compare.add_argument("--shadow", help="the challenger's outputs (default: the _shadow/ twin)")
    compare.add_argument("--out", help="JSON summary (default: SCOREPIPE_HOME/reports/compare-NAME.json)")
    compare.add_argument("--labels", help="label Parquet: also judge both on outcomes (ROC AUC, bootstrap 95%% CI)")
    label_options(compare)
    compare.set_defaults(handler=cmd_compare)
