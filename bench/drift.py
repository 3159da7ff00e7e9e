"""Drift report time and peak memory on large scored windows, and on wide data.

For each size, a fresh process builds the full report (sampling the window to
``SCOREPIPE_DRIFT_SAMPLE_ROWS`` rows with a fixed seed, Evidently drift + summary, HTML + JSON) and
reports its wall time and peak RSS. Target: 1M rows x ~20 columns in under 60 s, memory bounded.

``--wide``: a model over 1,000 numeric features, a 100,000-row reference (what registration keeps of
a 3M-row reference with SCOREPIPE_REFERENCE_ROWS=100000; the rows are i.i.d., so the bench draws the
sample directly), and 300,000 scored current rows with 50 shifted features. A fresh process builds
the report over every row and column (statistics for all 1,000 features, Evidently rendering the top
30), twice: cold (the model's outputs on the reference not yet cached) and warm. Then Evidently's own
``DataDriftPreset`` on a subset of the same columns, extrapolated to 1,000 (said so). Target: under 60 s.

Usage: .venv/bin/python bench/drift.py [--sizes 100000 1000000] [--wide [--evidently-columns 10]]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

from batch.run import run_batch  # noqa: E402
from bench.batch import dataset, registry  # noqa: E402
from scorepipe.settings import Settings  # noqa: E402
from scoring import Scorer  # noqa: E402


def scored_window(rows: int) -> Path:
    """Score the batch benchmark's input of ``rows`` rows once; reuse it afterwards."""
    folder = OUT / f"scored-{rows}"
    if not (folder / f"input-{rows}.parquet").exists():
        run_batch(dataset(rows), folder, Scorer.from_registry(registry()), chunk_size=100_000)
    return folder


def child(rows: int) -> None:
    from drift.report import build_report

    settings = Settings(home=OUT / "drift-home", registry=OUT / "registry")
    started = time.perf_counter()
    summary = build_report(scored_window(rows), OUT / "reports", settings, name=f"bench-{rows}")
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak),
                "sampled_rows": summary.current_rows,
                "columns": len(summary.features) + len(summary.predictions),
                "verdict": summary.verdict,
                "html_mb": round(Path(summary.html).stat().st_size / 1e6, 1),
            }
        )
    )


WIDE = OUT / "wide"
WIDE_FEATURES = 1_000
WIDE_REFERENCE = 100_000
WIDE_CURRENT = 300_000
WIDE_SHIFTED = 50


def _wide_rows(rows: int, seed: int, shifted: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, (rows, WIDE_FEATURES))
    values[:, :shifted] = values[:, :shifted] * 1.3 + 0.4  # a shifted, wider distribution
    values[rng.random(values.shape) < 0.01] = np.nan
    return pd.DataFrame(values, columns=[f"f{i:04d}" for i in range(WIDE_FEATURES)])


def wide_setup() -> tuple[Path, float]:
    """The wide model registered (once; its registration time), and its scored current rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.ensemble import HistGradientBoostingClassifier

    from scoring import Registry
    from scoring.training import bundle_from_estimator

    registry = Registry(WIDE / "registry")
    registered = WIDE / "registered-seconds"
    if not registered.exists():
        train = _wide_rows(20_000, seed=1)
        target = (np.nan_to_num(train.iloc[:, :10].to_numpy()).sum(axis=1) > 0).astype(int)
        model = HistGradientBoostingClassifier(max_iter=50, random_state=0).fit(train, target)
        bundle = bundle_from_estimator(model, _wide_rows(WIDE_REFERENCE, seed=2), reference_rows=WIDE_REFERENCE)
        started = time.perf_counter()
        registry.promote(registry.register(bundle), "champion")
        registered.write_text(f"{time.perf_counter() - started:.2f}")
    current = WIDE / "current" / "date=2026-12-07"
    if not (current / "part-0.parquet").exists():
        current.mkdir(parents=True, exist_ok=True)
        scorer = Scorer.from_registry(registry)
        writer = None
        for start in range(0, WIDE_CURRENT, 50_000):
            rows = _wide_rows(50_000, seed=100 + start, shifted=WIDE_SHIFTED)
            table = pa.Table.from_pandas(scorer.score(rows).drop(columns=["reject_reason"]), preserve_index=False)
            writer = writer or pq.ParquetWriter(current / ".part-0.parquet", table.schema)
            writer.write_table(table)
        assert writer is not None
        writer.close()
        (current / ".part-0.parquet").rename(current / "part-0.parquet")
    return current, float(registered.read_text())


def wide_child(run: str) -> None:
    from drift.report import build_report

    settings = Settings(home=WIDE / "home", registry=WIDE / "registry", drift_sample_rows=WIDE_CURRENT)
    started = time.perf_counter()
    summary = build_report(WIDE / "current", WIDE / "reports", settings, name=f"wide-{run}")
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "peak_rss_mb": _peak_mb(),
                "features": len(summary.features),
                "rendered": len(summary.rendered_features or []),
                "current_rows": summary.current_rows,
                "reference_rows": summary.reference_rows,
                "drifted": len(summary.drifted_features),
                "html_mb": round(Path(summary.html).stat().st_size / 1e6, 1),
            }
        )
    )


def wide_evidently(columns: int) -> None:
    """Evidently's DataDriftPreset alone, on ``columns`` of the same reference and current rows."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from scoring import Registry

    names = [f"f{i:04d}" for i in range(WIDE_SHIFTED - columns // 2, WIDE_SHIFTED + columns - columns // 2)]
    reference = Registry(WIDE / "registry").load("champion").bundle.reference[names]
    current = pd.read_parquet(WIDE / "current", columns=names)
    definition = DataDefinition(numerical_columns=names)
    report = Report([DataDriftPreset(columns=names, num_method="wasserstein", num_threshold=0.1)])
    started = time.perf_counter()
    report.run(Dataset.from_pandas(current, data_definition=definition),
               Dataset.from_pandas(reference, data_definition=definition))  # fmt: skip
    seconds = time.perf_counter() - started
    peak = _peak_mb()
    print(json.dumps({"columns": columns, "seconds": round(seconds, 2), "peak_rss_mb": peak}))


def _peak_mb() -> int:
    """This process's own peak RSS (VmHWM): ru_maxrss also counts what the process was before exec."""
    status = Path("/proc/self/status").read_text()
    return round(int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024)


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def wide(evidently_columns: int) -> None:
    _, registered = wide_setup()
    for cache in (WIDE / "home" / "cache" / "drift").glob("*.parquet"):
        cache.unlink()  # the first run computes the model's outputs on the reference, as after a promotion
    runs = {run: _child("--wide-child", run) for run in ("cold", "warm")}
    theirs = _child("--wide-evidently", str(evidently_columns))
    extrapolated = theirs["seconds"] * WIDE_FEATURES / evidently_columns
    for run, r in runs.items():
        print(
            f"scorepipe drift, {run}: {r['features']:,} features x {r['current_rows']:,} current rows against "
            f"{r['reference_rows']:,} reference rows: {r['seconds']:.1f} s (target < 60 s), peak RSS "
            f"{r['peak_rss_mb']:,} MB, {r['drifted']} drifted (of {WIDE_SHIFTED} shifted), {r['rendered']} rendered, "
            f"HTML {r['html_mb']} MB"
        )
    warm = runs["warm"]["seconds"]
    print(
        f"Evidently DataDriftPreset alone on {evidently_columns} of those columns: {theirs['seconds']:.1f} s "
        f"(peak RSS {theirs['peak_rss_mb']:,} MB); extrapolated to {WIDE_FEATURES:,} columns: "
        f"{extrapolated:,.0f} s, {extrapolated / warm:.0f}x scorepipe's warm report"
    )
    print(f"registering the wide version (profile included): {registered:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", type=int)
    parser.add_argument("--wide", action="store_true")
    parser.add_argument("--evidently-columns", type=int, default=10)
    parser.add_argument("--wide-child")
    parser.add_argument("--wide-evidently", type=int)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if args.wide_child:
        wide_child(args.wide_child)
        return
    if args.wide_evidently:
        wide_evidently(args.wide_evidently)
        return
    if args.wide:
        wide(args.evidently_columns)
        return
    results = []
    for rows in args.sizes:
        scored_window(rows)
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(rows)], check=True, capture_output=True, text=True
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"{rows:>9,} rows x {r['columns']} columns: {r['seconds']:6.1f} s, peak RSS {r['peak_rss_mb']} MB, "
            f"{r['sampled_rows']:,} rows sampled, HTML {r['html_mb']} MB, verdict {r['verdict']} (target < 60 s)"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
