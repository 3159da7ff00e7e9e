"""Drift report time and peak memory on large scored windows.

For each size, a fresh process builds the full report (sampling the window to
``SCOREPIPE_DRIFT_SAMPLE_ROWS`` rows with a fixed seed, Evidently drift + summary, HTML + JSON) and
reports its wall time and peak RSS. Target: 1M rows x ~20 columns in under 60 s, memory bounded.

Usage: .venv/bin/python bench/drift.py [--sizes 100000 1000000]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", type=int)
    args = parser.parse_args()
    if args.child:
        child(args.child)
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
