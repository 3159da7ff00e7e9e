"""Following an MLflow alias: how soon a running consumer scores with the version the alias moved to.

Measured in one run, on a real MLflow tracking server and Kafka broker, with `scorepipe stream
--model mlflow:models:/NAME@champion` in its own process and events produced at a steady rate:
- watching: the cost of one check (``get_model_version_by_alias``), p50 and p99 over 200 calls;
- switch: from the alias move to the first prediction by the new version; the first move is to a
  version never seen (download, load, signature and feature checks, quality gate, registration),
  the next ones to versions already imported;
- restart, the naive way (what a server that cannot follow an alias must do): from stopping the
  consumer to the first prediction by a new consumer pinned to the other version;
- for both, the worst produce-to-prediction delay of the events around the change.
The limit a switch chases is the check interval (``SCOREPIPE_MODEL_CHECK_SECONDS``).

Usage: .venv/bin/python bench/mlflow_follow.py [--rate 1000] [--check-seconds 1.0]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stream import settings_for  # noqa: E402
from devservers.kafka import KafkaBroker  # noqa: E402
from devservers.mlflow import MLflowServer  # noqa: E402
from integrations.mlflow.client import mlflow_client  # noqa: E402
from integrations.mlflow.tracking import log_trained  # noqa: E402
from scorepipe.settings import Settings  # noqa: E402
from scoring import Registry, synthetic  # noqa: E402
from scoring.training import train_bundle  # noqa: E402
from streaming.producer import produce  # noqa: E402
from streaming.topics import assigned_partitions, ensure_topics  # noqa: E402
from streaming.transport.kafka_python import KafkaPythonTransport  # noqa: E402

NAME = "bench-follow"


class Predictions:
    """Reads the predictions topic on a thread: (event time, scored time, model version) per prediction."""

    def __init__(self, settings: Settings) -> None:
        from kafka import TopicPartition

        self.reader = KafkaPythonTransport().consumer(settings, fetch_max_wait_ms=50).client
        self.reader.assign([TopicPartition(settings.predictions_topic, p) for p in range(settings.topic_partitions)])
        self.reader.seek_to_end()
        self.seen: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> Predictions:
        self._thread.start()
        return self

    def _read(self) -> None:
        while not self._stop.is_set():
            for records in self.reader.poll(timeout_ms=100).values():
                for r in records:
                    headers = dict(r.headers)
                    scored = datetime.fromisoformat(headers["scored_at"].decode()).timestamp()
                    self.seen.append((int(headers["event_time_ms"]) / 1000, scored, int(headers["model_version"])))

    def first_by(self, version: int, after: float, timeout: float = 120) -> float:
        """When the first prediction by ``version`` scored after ``after`` was made (wall clock)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [s for _, s, v in list(self.seen) if v == version and s >= after]
            if found:
                return min(found)
            time.sleep(0.02)
        raise TimeoutError(f"no prediction by v{version} within {timeout:.0f}s")

    def worst_delay(self, start: float, end: float) -> float:
        """The longest produce-to-prediction delay of events produced between ``start`` and ``end`` (s)."""
        delays = [s - e for e, s, _ in list(self.seen) if start <= e <= end]
        return max(delays) if delays else float("nan")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.reader.close()


def stream(settings: Settings, model: str, check_seconds: float, log: Path) -> subprocess.Popen:
    env = {**os.environ, **settings.as_env(), "SCOREPIPE_MODEL_CHECK_SECONDS": str(check_seconds)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "scorepipe.cli", "stream", "--model", model], env=env, stdout=out, stderr=out
        )


def wait_assigned(settings: Settings) -> None:
    deadline = time.monotonic() + 60
    while len(assigned_partitions(settings)) < settings.topic_partitions:
        if time.monotonic() > deadline:
            raise TimeoutError("the consumer never held every partition")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000, help="events per second, steady")
    parser.add_argument("--check-seconds", type=float, default=1.0, help="the watcher's check interval")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-follow-"))
    broker = KafkaBroker(work / "kafka").start()
    server = MLflowServer(work / "mlflow").start()
    consumer: subprocess.Popen | None = None
    try:
        settings = settings_for(
            broker.bootstrap_servers, "follow", mlflow_tracking_uri=server.tracking_uri, mlflow_model_name=NAME,
            registry=str(work / "registry"), stream_batch_ms=20,
        )  # fmt: skip
        for seed in (1, 2):
            frame = synthetic.generate(20_000, seed=seed)
            bundle = train_bundle(frame, synthetic.TARGET, features=list(synthetic.FEATURES), seed=seed)
            log_trained(settings, bundle, data_source=f"synthetic:{seed}", train_rows=len(frame))
        client = mlflow_client(server.tracking_uri)
        client.set_registered_model_alias(NAME, "champion", "1")
        checks = []
        for _ in range(200):
            started = time.perf_counter()
            client.get_model_version_by_alias(NAME, "champion")
            checks.append((time.perf_counter() - started) * 1000)

        ensure_topics(settings)
        predictions = Predictions(settings).start()
        log = work / "stream.log"
        consumer = stream(settings, f"mlflow:models:/{NAME}@champion", args.check_seconds, log)
        wait_assigned(settings)
        seconds = 90
        sender = threading.Thread(
            target=produce, args=(settings,), kwargs={"count": int(args.rate * seconds), "rate": args.rate, "seed": 5}
        )
        sender.start()
        registry = Registry(settings.registry_dir)
        predictions.first_by(1, after=0)  # MLflow v1, imported at start as local v1
        switches = []
        phase = np.random.default_rng(3)  # moves land anywhere in the check interval, as a user's would
        for mlflow_version in ("2", "1", "2", "1", "2", "1", "2", "1"):
            time.sleep(3 + phase.uniform(0, args.check_seconds))
            moved = time.time()
            client.set_registered_model_alias(NAME, "champion", mlflow_version)
            local = _local_version(registry, mlflow_version, moved)
            served = predictions.first_by(local, after=moved)
            switches.append((mlflow_version, served - moved, predictions.worst_delay(moved - 2, served + 2)))
        time.sleep(4)
        # The naive way: stop the consumer (cleanly) and start one pinned to the other version.
        stopped = time.time()
        consumer.terminate()
        consumer.wait(timeout=60)
        other = _local_version(registry, "2", 0)
        consumer = stream(settings, f"v{other}", args.check_seconds, log)
        served = predictions.first_by(other, after=stopped)
        restart = (served - stopped, predictions.worst_delay(stopped - 2, served + 2))
        sender.join()
        predictions.stop()
        print_results(args, checks, switches, restart)
    finally:
        if consumer is not None:
            consumer.terminate()
            consumer.wait(timeout=60)
        server.stop()
        broker.stop()


def _local_version(registry: Registry, mlflow_version: str, since: float, timeout: float = 60) -> int:
    """The local version the MLflow version was (or is being) imported as."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = registry.find(kind="mlflow", name=NAME, version=mlflow_version)
        if found:
            return found[0]
        time.sleep(0.02)
    raise TimeoutError(f"MLflow v{mlflow_version} was never imported")


def print_results(args, checks, switches, restart) -> None:
    p50, p99 = np.percentile(checks, 50), np.percentile(checks, 99)
    print(f"\nwatching: one alias check {p50:.1f} ms p50, {p99:.1f} ms p99 (every {args.check_seconds:g} s)")
    print(f"at {args.rate:,.0f} events/s; limit: the check interval, {args.check_seconds:g} s")
    print("| change | to the first prediction by the new version | ratio to the limit | worst event delay around it |")
    print("|---|---|---|---|")
    for i, (version, took, worst) in enumerate(switches):
        what = f"alias -> MLflow v{version}" + (" (never seen: imported)" if i == 0 else " (already imported)")
        print(f"| {what} | {took:.2f} s | {took / args.check_seconds:.2f} | {worst:.2f} s |")
    took, worst = restart
    print(f"| naive: stop, start pinned to the other version | {took:.2f} s | {took / args.check_seconds:.2f} | "
          f"{worst:.2f} s |")  # fmt: skip
    known = [t for _, t, _ in switches[1:]]
    print(f"\nswitch to a known version (median of {len(known)}) / restart: {np.median(known) / took:.3f}; "
          f"to a new version / restart: {switches[0][1] / took:.3f}; worst event delay, switching / restarting: "
          f"{max(w for _, _, w in switches) / worst:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
