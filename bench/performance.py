"""Join and report time and memory: 1M scored rows against 1M labels, in a fresh process.

Measured: the whole `build_performance_report` (read labels, batched join, scikit-learn figures,
probability-based estimate, Evidently classification report, HTML + JSON) and the peak RSS, against
the naive way (read every scored file whole with pandas and `merge`). Target: under 30 s, under 1.5 GB.

Usage: .venv/bin/python bench/performance.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batch.run import run_batch  # noqa: E402
from bench.batch import OUT, dataset, registry  # noqa: E402
from scorepipe.demo_data import write_labels  # noqa: E402
from scoring import Scorer  # noqa: E402

CHILD = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from scorepipe.settings import Settings
started = time.perf_counter()
if {naive}:
    import pandas as pd
    scored = pd.read_parquet({scored!r})
    labels = pd.read_parquet({labels!r})
    joined = scored.merge(labels, on="transaction_id")
    from sklearn.metrics import roc_auc_score
    result = {{"rows": len(joined), "roc_auc": roc_auc_score(joined["label"], joined["proba_1"])}}
else:
    from performance.report import build_performance_report
    settings = Settings(home=Path({home!r}), registry=Path({registry!r}))
    summary = build_performance_report({scored!r}, {labels!r}, Path({home!r}) / "reports", settings, name="bench")
    result = {{"rows": summary.labelled_rows, "roc_auc": summary.versions[0].roc_auc}}
result["seconds"] = round(time.perf_counter() - started, 2)
result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps(result))
"""


def measure(naive: bool, scored: Path, labels: Path, home: Path, registry_root: Path) -> dict:
    code = CHILD.format(root=str(ROOT), naive=naive, scored=str(scored), labels=str(labels), home=str(home),
                        registry=str(registry_root))  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    reg = registry()
    source = dataset(args.rows)  # the batch benchmark's input: seed 2026, no target
    scored_dir = OUT / f"scored-{args.rows}"
    if not (scored_dir / source.name).exists():
        run_batch(source, scored_dir, Scorer.from_registry(reg), chunk_size=100_000)
    labels = OUT / f"labels-{args.rows}.parquet"
    if not labels.exists():
        write_labels(labels, args.rows, seed=2026)
    home = Path(tempfile.mkdtemp(prefix="bench-performance-"))
    ours = measure(False, scored_dir, labels, home, reg.root)
    naive = measure(True, scored_dir, labels, home, reg.root)
    results = {"scored_rows": args.rows, "label_rows": args.rows, "scorepipe": ours, "naive_pandas_merge": naive}
    print(f"scorepipe performance report: {ours['seconds']} s, peak RSS {ours['peak_rss_mb']} MB "
          f"({ours['rows']:,} rows joined; target < 30 s and < 1,500 MB)")  # fmt: skip
    print(f"naive pandas read + merge + ROC AUC only: {naive['seconds']} s, peak RSS {naive['peak_rss_mb']} MB")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
