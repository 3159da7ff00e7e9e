"""Live drift: false alarms on clean traffic, time to see real drift, and the cost of one measurement.

A simulated clock drives the real ``LiveDrift`` window of the stream and the server (defaults:
the last 5,000 rows within 15 minutes, measured every 30 s) over the default model, fed by scored
synthetic events at ``--rate`` events/s:

- clean traffic for ``--hours`` hours (drawn half an hour at a time): how often a feature's figure
  crosses its threshold, how often the alert condition (``scorepipe_live_drift_share`` >= 0.3, held
  15 minutes) holds, the largest figure seen against its threshold;
- then drifted traffic (the generator's drifted mode): how long until the share of drifting
  features reaches 0.3 and the predictions drift.

Usage: .venv/bin/python bench/live_drift.py [--hours 6] [--rate 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scorepipe.settings import Settings  # noqa: E402
from scoring import Scorer, synthetic  # noqa: E402
from scoring.live_drift import LiveDrift  # noqa: E402
from scoring.training import train_bundle  # noqa: E402

SHARE = 0.3  # the ScorepipeLiveDataDrift alert's threshold
HELD_S = 15 * 60  # ... held this long


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    args = parser.parse_args()
    settings = Settings()
    bundle = train_bundle(
        synthetic.generate(20_000, seed=11), synthetic.TARGET, features=list(synthetic.FEATURES), seed=11
    )
    scorer = Scorer(bundle, version=1)
    clock = Clock()
    window = LiveDrift(
        settings.live_drift_methods(),
        rows=settings.live_drift_rows,
        seconds=settings.live_drift_minutes * 60,
        clock=clock,
    )
    interval = settings.live_drift_interval_seconds
    per_tick = int(args.rate * interval)
    ticks = int(args.hours * 3600 / interval)
    print(
        f"window: {settings.live_drift_rows:,} rows / {settings.live_drift_minutes:g} min, measured every "
        f"{interval:g} s; {args.rate:g} events/s; {ticks:,} measurements over {args.hours:g} h of clean traffic"
    )
    measured = crossings = alert_ticks = alerts = predictions = 0
    held = 0.0
    worst, worst_name = 0.0, ""
    strengths: dict[str, float] = {}
    seconds: list[float] = []
    seed = 1000
    traffic = iter(())
    for _ in range(ticks):
        # The generator draws its customers per call: a call per tick would make every 30 s a small
        # population of its own, so half an hour of traffic is drawn at once and fed tick by tick.
        rows = next(traffic, None)
        if rows is None:
            seed += 1
            chunk = synthetic.generate(per_tick * 60, seed=seed, with_target=False)
            traffic = (chunk.iloc[i : i + per_tick] for i in range(0, len(chunk), per_tick))
            rows = next(traffic)
        window.observe(scorer, scorer.score(rows))
        clock.now += interval
        started = time.perf_counter()
        figures = window.measure()
        seconds.append(time.perf_counter() - started)
        if figures is None:
            continue
        measured += 1
        crossings += sum(s.drifted for s in figures.features)
        predictions += figures.prediction_drift
        for stat in figures.features:
            strengths[stat.column] = max(strengths.get(stat.column, 0.0), stat.strength)
            if stat.strength > worst:
                worst, worst_name = stat.strength, f"{stat.column} ({stat.method} {stat.score:.3f})"
        held = held + interval if figures.drifted_share >= SHARE else 0.0
        alert_ticks += held >= HELD_S
        alerts += held == HELD_S
    features = len(bundle.schema.names)
    print(
        f"clean: {measured:,} measurements x {features} features: {crossings} feature crossings "
        f"({crossings / (measured * features):.2%} of figures), prediction drift in {predictions} "
        f"({predictions / measured:.2%}), alert condition held in {alert_ticks} ({alerts} alerts); largest "
        f"figure {worst:.2f}x its threshold: {worst_name}"
    )
    ranked = sorted(strengths.items(), key=lambda item: -item[1])[:5]
    print("largest figure per feature, over threshold: " + ", ".join(f"{n} {v:.2f}" for n, v in ranked))
    ms = np.array(seconds) * 1000
    print(f"one measurement of the full window: p50 {np.median(ms):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms")

    elapsed = 0.0
    seen_share = seen_prediction = None
    while elapsed < 3600 and (seen_share is None or seen_prediction is None):
        seed += 1
        rows = synthetic.generate(per_tick, seed=seed, drifted=True, with_target=False)
        window.observe(scorer, scorer.score(rows))
        clock.now += interval
        elapsed += interval
        figures = window.measure()
        if figures is not None and seen_share is None and figures.drifted_share >= SHARE:
            seen_share = elapsed
        if figures is not None and seen_prediction is None and figures.prediction_drift:
            seen_prediction = elapsed
    print(
        f"drifted traffic from t=0: share of drifting features >= {SHARE} at {seen_share} s, prediction drift at "
        f"{seen_prediction} s (the alert fires {HELD_S // 60} min after the share is reached)"
    )


if __name__ == "__main__":
    main()
