"""Online scoring throughput and latency: `scorepipe serve` on loopback under a bounded async load.

Measured in one run, on the same rows:
- the limit: the core's ``Scorer.score`` in-process (one record per call, and 100-record frames);
- single-record ``POST /predict`` at a fixed rate (p50, p99) and at saturation (requests/s, p50, p99);
- 100-record ``POST /predict_batch`` at saturation (rows/s) and V2 ``infer`` with 100 rows;
- against the seed service's published figures (about 60 requests/s single, 1,000 rows/s in batches of
  100, p99 35 ms).

Load generators run on the same 2 cores as the server, so every figure is a floor for what the server
does with the machine to itself. Saturation is driven by `wrk` (C, Debian package `wrk`; `make bench`
installs it) for a fixed time; a Python client costs more CPU per request than the server does and
would measure itself. The steady-rate run uses `hey` (Go, Debian package `hey`) with 10 rate-limited
connections; without it, an open-loop httpx client (one request every 1/rate s, bounded by a
request count), whose own CPU then adds to the latency it measures.

Usage: .venv/bin/python bench/online.py [--workers 2] [--requests 3000] [--rate 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.batch import registry  # noqa: E402
from devservers.process import ManagedProcess, free_port, http_ok  # noqa: E402
from scorepipe.settings import Settings  # noqa: E402
from scoring import Scorer, synthetic  # noqa: E402

SEED = {"single_rps": 60.0, "batch_rows_per_s": 1000.0, "p99_ms": 35.0}


def rows(n: int, seed: int = 2027) -> list[dict]:
    frame = synthetic.generate(n, seed=seed, with_target=False).drop(columns=[synthetic.ID_COLUMN])
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def in_process_limit(scorer: Scorer, records: list[dict]) -> dict:
    """``Scorer.score`` on one thread: single records per call, and 100-record frames."""
    import pandas as pd

    frames = [pd.DataFrame([r]) for r in records[:300]]

    def per_second(scorer: Scorer) -> float:
        gc.collect()  # a full collection left pending by the set-up would land inside the timed loop
        started = time.perf_counter()
        for frame in frames:
            scorer.score(frame)
        return len(frames) / (time.perf_counter() - started)

    single = per_second(scorer)
    sklearn_path = Scorer(scorer.bundle, scorer.version)
    sklearn_path._small_frames = None  # the naive way: every record through Pipeline.predict_proba
    single_sklearn = per_second(sklearn_path)
    batches = [pd.DataFrame(records[i : i + 100]) for i in range(0, len(records) - 99, 100)]
    gc.collect()
    started = time.perf_counter()
    for frame in batches:
        scorer.score(frame)
    batch_rows = 100 * len(batches) / (time.perf_counter() - started)
    return {
        "single_calls_per_s": round(single, 1),
        "single_calls_per_s_through_sklearn": round(single_sklearn, 1),
        "batch100_rows_per_s": round(batch_rows),
    }


async def fixed_rate(url: str, bodies: list[bytes], rate: float, seconds: float) -> dict:
    """Open-loop load: one request every 1/rate s, whatever the answers do (no coordinated omission)."""
    count = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as client:

        async def one(body: bytes) -> None:
            nonlocal errors
            t = time.perf_counter()
            response = await client.post(url, content=body, headers={"content-type": "application/json"})
            latencies.append(time.perf_counter() - t)
            errors += response.status_code != 200

        tasks = []
        started = time.perf_counter()
        for i in range(count):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(bodies[i % len(bodies)])))
        await asyncio.gather(*tasks)
    return {"requests": count, "errors": errors, **percentiles(latencies)}


async def saturate(url: str, bodies: list[bytes], total: int, concurrency: int) -> dict:
    """Closed-loop load: ``concurrency`` clients each sending their next request as soon as one returns."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker() -> None:
            nonlocal sent, errors
            while sent < total:
                body = bodies[sent % len(bodies)]
                sent += 1
                t = time.perf_counter()
                response = await client.post(url, content=body, headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - t)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"requests": total, "errors": errors, "requests_per_s": round(total / elapsed, 1), **percentiles(latencies)}


def wrk(url: str, body: bytes, *, connections: int, seconds: float, workdir: Path) -> dict:
    """Closed-loop saturation with wrk: requests/s, p50 and p99 over a fixed time."""
    script = workdir / f"post-{connections}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "-s", str(script), "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 1)

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"requests_per_s": round(rps, 1), "p50_ms": ms("50"), "p99_ms": ms("99"), "errors": 0}


def hey(url: str, body: bytes, *, rate: float, seconds: float, workdir: Path, connections: int) -> dict:
    """``rate`` requests/s for ``seconds`` from ``connections`` rate-limited connections: p50, p99, errors.

    hey starts every connection's ticker at once, so N connections send bursts of N requests every
    N/rate seconds: 2 connections come close to evenly spaced arrivals, 10 make bursts of 10.
    """
    payload = workdir / "hey-body.json"
    payload.write_bytes(body)
    out = subprocess.run(
        ["hey", "-z", f"{seconds:.0f}s", "-c", str(connections), "-q", f"{rate / connections:g}", "-m", "POST",
         "-T", "application/json", "-D", str(payload), url],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    ).stdout  # fmt: skip

    def ms(q: str) -> float:
        return round(float(re.search(rf"{q}% in ([\d.]+) secs", out).group(1)) * 1000, 1)  # type: ignore[union-attr]

    codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", out)
    errors = sum(int(n) for code, n in codes if code != "200")
    sent = sum(int(n) for _, n in codes)
    return {"requests": sent, "errors": errors, "p50_ms": ms("50"), "p99_ms": ms("99")}


def percentiles(latencies: list[float]) -> dict:
    ms = np.asarray(latencies) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def v2_body(batch: list[dict]) -> bytes:
    inputs = []
    for name in batch[0]:
        values = [r[name] for r in batch]
        kind = "BYTES" if isinstance(next((v for v in values if v is not None), 0.0), str) else "FP64"
        inputs.append({"name": name, "shape": [len(batch)], "datatype": kind, "data": values})
    return json.dumps({"inputs": inputs}).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=3000, help="single-record requests at saturation")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batches", type=int, default=300, help="100-record requests at saturation")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    os.environ["OMP_NUM_THREADS"] = "1"  # as `scorepipe serve` runs: one OpenMP thread per scoring thread
    reg = registry()
    records = rows(3000)
    limit = in_process_limit(Scorer.from_registry(reg), records)
    port = free_port()
    settings = Settings(home=Path(tempfile.mkdtemp(prefix="bench-online-")), registry=reg.root)
    server = ManagedProcess(
        "scorepipe serve",
        [sys.executable, "-m", "scorepipe.cli", "serve", "--port", str(port), "--workers", str(args.workers)],
        env={**os.environ, **settings.as_env()},
        log_path=settings.home / "serve.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_until(lambda: http_ok(f"{url}/v2/health/ready"), timeout=90, what="ready")
        singles = [json.dumps(r).encode() for r in records]
        batches = [json.dumps(records[i : i + 100]).encode() for i in range(0, 3000, 100)]
        v2 = [v2_body(records[i : i + 100]) for i in range(0, 3000, 100)]
        # Warm-up: both workers' first calls (imports, allocations) stay out of the figures.
        asyncio.run(saturate(f"{url}/predict", singles, 1000, 16))
        asyncio.run(fixed_rate(f"{url}/predict", singles, args.rate, 3))
        bursty = None
        if shutil.which("hey"):
            home = settings.home
            steady = hey(
                f"{url}/predict", singles[0], rate=args.rate, seconds=args.seconds, workdir=home, connections=2
            )
            bursty = hey(
                f"{url}/predict", singles[0], rate=args.rate, seconds=args.seconds, workdir=home, connections=10
            )
        else:
            print("hey not found (apt-get install hey): steady rate from httpx, whose CPU adds to the latency")
            steady = asyncio.run(fixed_rate(f"{url}/predict", singles, args.rate, args.seconds))
        if shutil.which("wrk"):
            tmp = settings.home
            single = wrk(f"{url}/predict", singles[0], connections=args.concurrency, seconds=args.seconds, workdir=tmp)
            batch = wrk(f"{url}/predict_batch", batches[0], connections=4, seconds=args.seconds, workdir=tmp)
            infer = wrk(f"{url}/v2/models/scorepipe/infer", v2[0], connections=4, seconds=args.seconds, workdir=tmp)
        else:  # a floor: the Python client competes with the server for the cores
            print("wrk not found (apt-get install wrk): saturating with httpx, which measures itself too")
            single = asyncio.run(saturate(f"{url}/predict", singles, args.requests, args.concurrency))
            batch = asyncio.run(saturate(f"{url}/predict_batch", batches, args.batches, 4))
            infer = asyncio.run(saturate(f"{url}/v2/models/scorepipe/infer", v2, args.batches, 4))
    finally:
        server.stop()
    batch_rows = batch["requests_per_s"] * 100
    infer_rows = infer["requests_per_s"] * 100
    results = {
        "workers": args.workers,
        "limit_in_process": limit,
        "single_at_fixed_rate": {"rate": args.rate, "connections": 2, **steady},
        "single_at_fixed_rate_bursts_of_10": bursty,
        "load_generator": "wrk" if shutil.which("wrk") else "httpx",
        "steady_load_generator": "hey" if shutil.which("hey") else "httpx",
        "single_at_saturation": {"concurrency": args.concurrency, **single},
        "batch100_at_saturation": {"concurrency": 4, "rows_per_s": round(batch_rows), **batch},
        "v2_infer100_at_saturation": {"concurrency": 4, "rows_per_s": round(infer_rows), **infer},
        "single_vs_seed": round(single["requests_per_s"] / SEED["single_rps"], 1),
        "batch_ratio_to_limit": round(batch_rows / limit["batch100_rows_per_s"], 3),
        "batch_vs_seed": round(batch_rows / SEED["batch_rows_per_s"], 1),
    }
    print(f"limit, Scorer.score in-process, one record per call:   {limit['single_calls_per_s']:>9,} calls/s")
    print(
        f"naive, the same through sklearn's predict_proba:       "
        f"{limit['single_calls_per_s_through_sklearn']:>9,} calls/s (no small-frame shortcut)"
    )
    print(f"limit, Scorer.score in-process, 100-record frames:    {limit['batch100_rows_per_s']:>9,} rows/s")
    print(
        f"/predict at {args.rate:.0f}/s (2 connections): p50 {steady['p50_ms']} ms, p99 {steady['p99_ms']} ms, "
        f"{steady['errors']} errors (target p99 < 5 ms; seed p99 {SEED['p99_ms']:.0f} ms)"
    )
    if bursty is not None:
        print(f"/predict at {args.rate:.0f}/s in bursts of 10: p50 {bursty['p50_ms']} ms, p99 {bursty['p99_ms']} ms")
    print(
        f"/predict at saturation ({args.concurrency} clients): {single['requests_per_s']:,} requests/s, "
        f"p50 {single['p50_ms']} ms, p99 {single['p99_ms']} ms; {results['single_vs_seed']}x the seed "
        f"(target >= 10x)"
    )
    print(
        f"/predict_batch of 100: {batch_rows:,.0f} rows/s, {results['batch_ratio_to_limit']} of the in-process "
        f"limit (target >= 0.7), {results['batch_vs_seed']}x the seed"
    )
    print(f"V2 infer of 100 rows: {infer_rows:,.0f} rows/s, p99 {infer['p99_ms']} ms")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
