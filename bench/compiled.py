"""Compiled trees against scikit-learn's own ``predict_proba``, on the same rows and the same threads.

Measured in one run, on 1M rows of the default pipeline (200 trees, 5 native categorical features),
with 2% missing values in every column, at 1 and 2 threads:
- the limit chased: scikit-learn's ``Pipeline.predict_proba`` on the validated features (what
  ``Scorer.score`` called before, and what any scorer must at least call);
- ``Scorer.score`` with the compiled trees (validation, preparation, trees, the output frame);
- ``Scorer.score`` with them off (the previous path: validation, then ``predict_proba``);
- the naive way: one ``predict_proba`` call per row, on a sample;
and checks the probabilities are bit-identical (``np.array_equal``) to scikit-learn's.

Usage: .venv/bin/python bench/compiled.py [--rows 1000000] [--repeats 2] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

from scoring import Scorer, synthetic  # noqa: E402
from scoring.compiled import TreeCompiler  # noqa: E402
from scoring.scorer import ScorerOptions  # noqa: E402
from scoring.training import train_bundle  # noqa: E402
from scoring.validation import validate  # noqa: E402


def best(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--naive-rows", type=int, default=1_000)
    parser.add_argument("--records", type=int, default=5_000, help="single records timed through score_one")
    args = parser.parse_args()
    started = time.perf_counter()
    frame = synthetic.generate(100_000, seed=42)
    bundle = train_bundle(frame, synthetic.TARGET, features=list(synthetic.FEATURES), bounds=synthetic.BOUNDS)
    trained = time.perf_counter() - started
    started = time.perf_counter()
    bundle = TreeCompiler(cache=None).attach(bundle)  # no cache: the compile time is part of the figure
    compile_s = time.perf_counter() - started
    assert bundle.compiled_trees is not None, bundle.info["compiled_trees"]

    rows = synthetic.generate(args.rows, seed=2026, with_target=False)
    rng = np.random.default_rng(7)
    for spec in bundle.schema.features:
        if spec.nullable:
            rows.loc[rng.random(len(rows)) < 0.02, spec.name] = None if spec.kind == "categorical" else np.nan
    features = validate(rows, bundle.schema).features
    results: dict = {"rows": args.rows, "train_s": round(trained, 1), "compile_s": round(compile_s, 1), "threads": {}}
    for threads in (int(t) for t in args.threads.split(",")):
        with threadpool_limits(threads):
            compiled = Scorer(bundle, 1)
            plain = Scorer(bundle, 1, options=ScorerOptions(compiled_trees=False))
            assert compiled.compiled_trees, compiled.compiled_trees_reason
            expected = bundle.pipeline.predict_proba(features)
            got = compiled.score(rows)[compiled.proba_columns].to_numpy()
            identical = bool(np.array_equal(got, expected))
            limit_s = best(args.repeats, lambda: bundle.pipeline.predict_proba(features))
            compiled_s = best(args.repeats, lambda c=compiled: c.score(rows))
            plain_s = best(args.repeats, lambda p=plain: p.score(rows))
        one_by_one = features.head(args.naive_rows)
        naive_started = time.perf_counter()
        for i in range(len(one_by_one)):
            bundle.pipeline.predict_proba(one_by_one.iloc[i : i + 1])
        naive_rps = len(one_by_one) / (time.perf_counter() - naive_started)
        results["threads"][threads] = {
            "predict_proba_s": round(limit_s, 2),
            "score_compiled_s": round(compiled_s, 2),
            "score_sklearn_s": round(plain_s, 2),
            "compiled_over_predict_proba": round(limit_s / compiled_s, 2),
            "compiled_over_previous_score": round(plain_s / compiled_s, 2),
            "compiled_over_naive": round(args.rows / compiled_s / naive_rps),
            "bit_identical": identical,
        }
        r = results["threads"][threads]
        print(
            f"{threads} thread(s): predict_proba {limit_s:.2f} s, Scorer.score compiled {compiled_s:.2f} s "
            f"({r['compiled_over_predict_proba']}x predict_proba, target >= 1.8), sklearn path {plain_s:.2f} s "
            f"({r['compiled_over_previous_score']}x), naive {naive_rps:,.0f} rows/s "
            f"({r['compiled_over_naive']:,}x), bit-identical: {identical}"
        )
    results["one_record"] = one_record(bundle, args.records)
    r = results["one_record"]
    print(
        f"one record, Scorer.score_one on 1 thread: p50 {r['record_path']['p50_us']} us, "
        f"p99 {r['record_path']['p99_us']} us (target p50 < 100 us); the frame path: "
        f"p50 {r['frame_path']['p50_us']} us, p99 {r['frame_path']['p99_us']} us ({r['p50_speedup']}x); "
        f"bit-identical: {r['bit_identical']}"
    )
    print(f"compiled in {compile_s:.1f} s (train {trained:.1f} s)")
    print(json.dumps(results))


def one_record(bundle, count: int) -> dict:
    """``score_one`` latency per record: the record path against the frame path (compiled trees off)."""
    frame = synthetic.generate(count, seed=77, with_target=False)
    records = [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in frame.to_dict("records")
    ]
    with threadpool_limits(1):
        fast, frames = Scorer(bundle, 1), Scorer(bundle, 1, options=ScorerOptions(compiled_trees=False))
        figures = {}
        for name, scorer in (("record_path", fast), ("frame_path", frames)):
            for record in records[:200]:
                scorer.score_one(record)  # warm
            times = []
            for record in records:
                started = time.perf_counter()
                scorer.score_one(record)
                times.append(time.perf_counter() - started)
            figures[name] = {
                "p50_us": round(float(np.percentile(times, 50)) * 1e6, 1),
                "p99_us": round(float(np.percentile(times, 99)) * 1e6, 1),
            }
        identical = all(
            fast.score_one(r)[c] == frames.score_one(r)[c] for r in records[:500] for c in fast.proba_columns
        )
    return {
        **figures,
        "records": count,
        "p50_speedup": round(figures["frame_path"]["p50_us"] / figures["record_path"]["p50_us"], 1),
        "bit_identical": identical,
    }


if __name__ == "__main__":
    main()
