"""What the loop around HTTP scoring costs a request: the live window, and a shadow challenger.

The same server is started three ways and measured alternately, twice each, in one run:
- ``plain``: no live window, no shadow (the naive way: nothing of the monitoring loop);
- ``window``: each scored row appended, with its prediction id, to the live window (the default);
- ``shadow``: the window, and ``--shadow challenger`` scored on its own thread after each answer.
For each: single-record ``/predict`` latency at a steady rate (hey, 2 connections: p50, p99) and
throughput at saturation (wrk). Printed as ratios to ``plain``: the shadow must not delay answers at
a steady rate (p99 within noise), and costs throughput only by the CPU it uses on a busy server.

Usage: .venv/bin/python bench/online_shadow.py [--rate 100] [--seconds 10] [--workers 1] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.batch import registry  # noqa: E402
from bench.online import hey, rows, wrk  # noqa: E402
from devservers.process import ManagedProcess, free_port, http_ok  # noqa: E402
from scorepipe.settings import Settings  # noqa: E402
from scoring import synthetic  # noqa: E402
from scoring.training import train_bundle  # noqa: E402

MODES = {
    "plain": ({"SCOREPIPE_SERVE_LIVE_WINDOW": "false"}, []),
    "window": ({}, []),
    "shadow": ({}, ["--shadow", "challenger"]),
}


def with_challenger():
    reg = registry()
    if "challenger" not in reg.aliases():
        frame = synthetic.generate(50_000, seed=43, drifted=True)
        bundle = train_bundle(frame, synthetic.TARGET, features=list(synthetic.FEATURES), bounds=synthetic.BOUNDS)
        reg.promote(reg.register(bundle, note="bench challenger"), "challenger")
    return reg


def measure(mode: str, reg, args, body: bytes) -> dict:
    env, extra = MODES[mode]
    home = Path(tempfile.mkdtemp(prefix=f"bench-online-{mode}-"))
    settings = Settings(home=home, registry=reg.root)
    port = free_port()
    server = ManagedProcess(
        "scorepipe serve",
        [sys.executable, "-m", "scorepipe.cli", "serve", "--port", str(port), "--workers", str(args.workers), *extra],
        env={**os.environ, **settings.as_env(), **env},
        log_path=home / "serve.log",
    ).start()
    url = f"http://127.0.0.1:{port}/predict"
    try:
        server.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/v2/health/ready"), timeout=90, what="ready")
        hey(url, body, rate=args.rate, seconds=3, workdir=home, connections=2)  # warm-up
        steady = hey(url, body, rate=args.rate, seconds=args.seconds, workdir=home, connections=2)
        saturated = wrk(url, body, connections=16, seconds=args.seconds, workdir=home)
    finally:
        server.stop()
    shutil.rmtree(home, ignore_errors=True)
    return {
        "p50_ms": steady["p50_ms"],
        "p99_ms": steady["p99_ms"],
        "errors": steady["errors"],
        "saturation_rps": saturated["requests_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not (shutil.which("hey") and shutil.which("wrk")):
        raise SystemExit("needs hey and wrk (Debian packages; `make bench` installs them)")
    os.environ["OMP_NUM_THREADS"] = "1"
    reg = with_challenger()
    body = json.dumps(rows(1)[0]).encode()
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:  # alternating: a drift of the machine's load touches every mode alike
            runs[mode].append(measure(mode, reg, args, body))
    best = {
        mode: {
            "p99_ms": min(r["p99_ms"] for r in found),
            "p50_ms": min(r["p50_ms"] for r in found),
            "saturation_rps": max(r["saturation_rps"] for r in found),
            "errors": sum(r["errors"] for r in found),
        }
        for mode, found in runs.items()
    }
    plain = best["plain"]
    for mode, figures in best.items():
        throughput = figures["saturation_rps"] / plain["saturation_rps"]
        print(
            f"{mode:>6}: /predict at {args.rate:.0f}/s p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms "
            f"({figures['p99_ms'] / plain['p99_ms']:.2f}x plain), {figures['errors']} errors; saturation "
            f"{figures['saturation_rps']:,.0f} requests/s ({throughput:.2f}x plain)"
        )
    print(json.dumps({"rate": args.rate, "workers": args.workers, "runs": runs, "best": best}))


if __name__ == "__main__":
    main()
