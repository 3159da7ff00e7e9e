"""Batch scoring throughput and memory.

Measured in one run, on the same 1M-row Parquet file and the same model:
- limit: pyarrow ``iter_batches`` read + ``predict_proba`` + Parquet write, nothing else;
- scorepipe: ``score_file`` end to end (validation, rejects, lineage, atomic write);
- naive: one ``predict_proba`` call per row, on a small sample;
- peak RSS of a fresh process scoring 1M and 4M rows, to show memory stays flat;
- scale-out: many files on a Dask LocalCluster of 1, 2 and 4 single-threaded workers (the
  ``score-batch --workers N`` path), against the sequential in-process run and the ideal
  (N times one worker, capped at the machine's cores), with each worker's peak RSS;
- one big file on 1 and 2 workers (cut into a row range per worker, then joined).

Usage: .venv/bin/python bench/batch.py [--rows 1000000] [--big-rows 4000000] [--chunk-size 100000]
       [--scaling-files 8] [--scaling-rows 250000] [--only-scaling | --skip-scaling]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

from batch.engine import score_file  # noqa: E402
from batch.run import run_batch  # noqa: E402
from batch.runners import BatchJob, DaskOptions, DaskRunner  # noqa: E402
from scorepipe.demo_data import write_dataset  # noqa: E402
from scoring import Registry, Scorer, synthetic  # noqa: E402
from scoring.bundle import TREES_FILE  # noqa: E402
from scoring.compiled import TreeCompiler  # noqa: E402
from scoring.sources import discover_inputs  # noqa: E402
from scoring.training import train_bundle  # noqa: E402

SPLIT_ROWS = 200_000  # the batch_split_rows setting's default: the fewest rows a part of a cut file gets


def registry() -> Registry:
    """The bench's registry: the default pipeline, registered as ``scorepipe train`` does (compiled trees)."""
    reg = Registry(OUT / "registry")
    if not reg.versions() or TREES_FILE not in reg.info("champion").files:
        frame = synthetic.generate(100_000, seed=42)
        bundle = train_bundle(frame, synthetic.TARGET, features=list(synthetic.FEATURES), bounds=synthetic.BOUNDS)
        reg.promote(reg.register(bundle, note="bench", trees=TreeCompiler(cache=None)), "champion")
    return reg


def dataset(rows: int) -> Path:
    path = OUT / f"input-{rows}.parquet"
    if not path.exists():
        write_dataset(path, rows, seed=2026, with_target=False)
    return path


def limit(path: Path, scorer: Scorer, chunk_size: int) -> float:
    """Read, predict_proba and write: the floor any batch scorer must pay."""
    features = scorer.bundle.schema.names
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        writer = None
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size):
            frame = batch.to_pandas()
            proba = scorer.bundle.pipeline.predict_proba(frame[features])
            table = pa.Table.from_batches([batch])
            for i, label in enumerate(scorer.bundle.classes):
                table = table.append_column(f"proba_{label}", pa.array(proba[:, i]))
            if writer is None:
                writer = pq.ParquetWriter(Path(tmp) / "out.parquet", table.schema)
            writer.write_table(table)
        writer.close()
    return time.perf_counter() - started


def end_to_end(path: Path, scorer: Scorer, chunk_size: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        started = time.perf_counter()
        result = score_file(path, discover_inputs(path), Path(tmp), scorer, chunk_size=chunk_size, run_id="bench")
        return time.perf_counter() - started, result.scored


def naive(path: Path, scorer: Scorer, rows: int) -> float:
    """Rows per second when each row is its own predict_proba call (how a per-record loop scores)."""
    frame = pq.ParquetFile(path).read_row_group(0).to_pandas().head(rows)[scorer.bundle.schema.names]
    started = time.perf_counter()
    for i in range(len(frame)):
        scorer.bundle.pipeline.predict_proba(frame.iloc[i : i + 1])
    return len(frame) / (time.perf_counter() - started)


def child(rows: int, chunk_size: int) -> None:
    """Score ``rows`` rows in this fresh process and print its peak RSS."""
    scorer = Scorer.from_registry(registry())
    seconds, scored = end_to_end(dataset(rows), scorer, chunk_size)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "scored": scored, "seconds": seconds, "peak_rss_mb": peak_mb}))


def peak_rss(rows: int, chunk_size: int) -> dict:
    dataset(rows)
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(rows), "--chunk-size", str(chunk_size)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def scaling_inputs(files: int, rows: int) -> Path:
    folder = OUT / f"scaling-{files}x{rows}" / "date=2026-11-27"
    for i in range(files):
        if not (folder / f"part-{i:03d}.parquet").exists():
            write_dataset(folder / f"part-{i:03d}.parquet", rows, seed=3000 + i, with_target=False)
    return folder.parent


def on_dask(folder: Path, workers: int, chunk_size: int, split_rows: int = SPLIT_ROWS) -> dict:
    """Score every file on a fresh LocalCluster of ``workers``; time from submission (cluster already up)."""
    from distributed import Client, LocalCluster

    reg = registry()
    inputs = discover_inputs(folder)
    options = DaskOptions(workers=workers)
    with (
        tempfile.TemporaryDirectory(dir=OUT) as tmp,
        LocalCluster(**options.cluster_kwargs()) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: __import__("batch.runners"))  # imports are start-up, not scoring
        job = BatchJob(
            tmp, chunk_size, "bench", True, registry=str(reg.root), model_version=reg.resolve("champion"),
            split_rows=split_rows,
        )  # fmt: skip
        started = time.perf_counter()
        results = DaskRunner(DaskOptions(address=cluster.scheduler_address)).run(inputs, job)
        seconds = time.perf_counter() - started
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    assert all(r.status == "scored" for r in results), [r.error for r in results if r.error]
    rows = sum(r.scored for r in results)
    return {
        "workers": workers,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "peak_rss_mb_per_worker": sorted(round(v) for v in peaks.values()),
    }


def sequential(folder: Path, chunk_size: int) -> dict:
    """The default path: one file after another in this process, the model on every core."""
    scorer = Scorer.from_registry(registry())
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        started = time.perf_counter()
        summary = run_batch(folder, tmp, scorer, chunk_size=chunk_size, force=True)
        seconds = time.perf_counter() - started
    return {
        "rows": summary.rows_scored,
        "seconds": round(seconds, 2),
        "rows_per_s": round(summary.rows_scored / seconds),
    }


def scaling(files: int, rows: int, chunk_size: int, workers: tuple[int, ...] = (1, 2, 4), repeats: int = 1) -> dict:
    """Sequential, then each worker count; with ``repeats``, the counts alternate and the best run of each counts."""
    import os

    folder = scaling_inputs(files, rows)
    cores = os.cpu_count() or 1
    base = sequential(folder, chunk_size)
    tries: dict[int, list[dict]] = {n: [] for n in workers}
    for _ in range(repeats):
        for n in workers:
            tries[n].append(on_dask(folder, n, chunk_size))
    runs = [max(tries[n], key=lambda run: run["rows_per_s"]) for n in workers]
    for run in runs:
        run["runs_rows_per_s"] = [t["rows_per_s"] for t in tries[run["workers"]]]
    one = runs[0]["rows_per_s"]
    for run in runs:
        ideal = one * min(run["workers"], cores)
        run["ratio_to_ideal"] = round(run["rows_per_s"] / ideal, 3)
        run["speedup_over_one_worker"] = round(run["rows_per_s"] / one, 2)
        run["ratio_to_sequential"] = round(run["rows_per_s"] / base["rows_per_s"], 2)
    return {"files": files, "rows_per_file": rows, "cores": cores, "sequential": base, "dask": runs}


def print_scaling(result: dict) -> None:
    seq = result["sequential"]
    print(
        f"scale-out: {result['files']} files x {result['rows_per_file']:,} rows on {result['cores']} cores; "
        f"sequential in-process (model on every core): {seq['rows_per_s']:,} rows/s"
    )
    for run in result["dask"]:
        print(
            f"  {run['workers']} worker(s): {run['rows_per_s']:>9,} rows/s, x{run['speedup_over_one_worker']} over one "
            f"worker, {run['ratio_to_ideal']} of ideal, {run['ratio_to_sequential']} of sequential; "
            f"peak RSS per worker {run['peak_rss_mb_per_worker']} MB; runs {run['runs_rows_per_s']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=4_000_000)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--naive-rows", type=int, default=2_000)
    parser.add_argument("--child", type=int)
    parser.add_argument("--scaling-files", type=int, default=8)
    parser.add_argument("--scaling-rows", type=int, default=250_000)
    parser.add_argument("--only-scaling", action="store_true", help="run only the Dask scale-out measure")
    parser.add_argument("--skip-scaling", action="store_true", help="run only the single-file measures")
    parser.add_argument("--one-file-rows", type=int, default=1_000_000, help="one big file on 1 and 2 workers")
    parser.add_argument("--only-one-file", action="store_true", help="run only the one big file on 1 and 2 workers")
    parser.add_argument("--one-file-repeats", type=int, default=3, help="alternated 1- and 2-worker runs of the file")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.child:
        child(args.child, args.chunk_size)
        return
    if args.only_one_file:
        args.only_scaling = True
    scale = (
        {}
        if args.skip_scaling or args.only_one_file
        else scaling(args.scaling_files, args.scaling_rows, args.chunk_size)
    )
    one_file = (
        {}
        if args.skip_scaling
        else scaling(1, args.one_file_rows, args.chunk_size, workers=(1, 2), repeats=args.one_file_repeats)
    )
    for measured in (scale, one_file):
        if measured:
            print_scaling(measured)
    if args.only_scaling:
        print(json.dumps({"scaling": scale, "one_file": one_file}))
        return
    scorer = Scorer.from_registry(registry())
    path = dataset(args.rows)
    end_to_end(path, scorer, args.chunk_size)  # warm caches and imports once
    limit_s = min(limit(path, scorer, args.chunk_size) for _ in range(2))
    e2e_s, scored = min(end_to_end(path, scorer, args.chunk_size) for _ in range(2))
    naive_rps = naive(path, scorer, args.naive_rows)
    small = peak_rss(args.rows, args.chunk_size)
    big = peak_rss(args.big_rows, args.chunk_size)
    e2e_rps = args.rows / e2e_s
    results = {
        "rows": args.rows,
        "chunk_size": args.chunk_size,
        "limit_rows_per_s": round(args.rows / limit_s),
        "scorepipe_rows_per_s": round(e2e_rps),
        "ratio_to_limit": round(limit_s / e2e_s, 3),
        "naive_rows_per_s": round(naive_rps),
        "speedup_over_naive": round(e2e_rps / naive_rps, 1),
        "peak_rss_mb": {str(small["rows"]): round(small["peak_rss_mb"]), str(big["rows"]): round(big["peak_rss_mb"])},
        "peak_rss_growth": round(big["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "scaling": scale,
        "one_file": one_file,
    }
    print(f"limit (read + predict_proba + write): {results['limit_rows_per_s']:>10,} rows/s")
    print(f"scorepipe end to end:                 {results['scorepipe_rows_per_s']:>10,} rows/s")
    print(f"ratio to limit:                        {results['ratio_to_limit']:>10} (target >= 1.3 with compiled trees)")
    print(f"naive per-row predict_proba:          {results['naive_rows_per_s']:>10,} rows/s")
    print(f"speedup over naive:                    {results['speedup_over_naive']:>10}x")
    print(
        f"peak RSS: {small['peak_rss_mb']:.0f} MB at {small['rows']:,} rows, "
        f"{big['peak_rss_mb']:.0f} MB at {big['rows']:,} rows (x{results['peak_rss_growth']})"
    )
    for measured in (scale, one_file):
        if measured:
            print_scaling(measured)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
