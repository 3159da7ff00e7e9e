"""The demo's canary act: two rollouts on live traffic, judged by the gate: one promoted, one rolled back.

A broker, a ``scorepipe stream`` process with its ``/metrics``, events at a steady rate, and the
controller (``scorepipe canary watch``'s loop) on a thread with 3-second intervals. First the
challenger (trained on drifted data) goes through 25% and 100% and becomes champion; then a copy of
it whose schema refuses most amounts dead-letters what the champion scores, and is rolled back.
Each plan's decisions are printed as ``scorepipe canary status`` shows them.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading

from rich.console import Console

from devservers.process import ManagedProcess, free_port, http_ok
from scorepipe.render import print_canary, print_canary_decisions
from scorepipe.settings import Settings
from scoring import Registry
from scoring.bundle import ModelBundle

INTERVAL_S = 3.0


def canary_act(settings: Settings, console: Console) -> None:
    from devservers.kafka import KafkaBroker
    from gate.controller import CanaryController
    from streaming.topics import ensure_topics

    registry = Registry(settings.registry_dir)
    with console.status("starting Apache Kafka for the canary act"):
        broker = KafkaBroker(settings.home / "kafka-canary", reset=True).start()
    stream = consumer = feeder = None
    try:
        port = free_port()
        stream = settings.model_copy(
            update={
                "kafka_bootstrap_servers": broker.bootstrap_servers,
                "consumer_group": "scorepipe-canary-demo",
                "live_window_seconds": 1.0,
                "model_check_seconds": 0.2,
                "canary_metrics_urls": f"http://127.0.0.1:{port}/metrics",
                "canary_min_events": 100,
                # The challenger was trained on drifted data: it disagrees with the champion on some rows.
                "canary_min_agreement": 0.8,
                "canary_max_probability_shift": 0.2,
            }
        )
        ensure_topics(stream)
        consumer = ManagedProcess(
            "scorepipe stream",
            [sys.executable, "-m", "scorepipe.cli", "stream", "--metrics-port", str(port)],
            env={**os.environ, **stream.as_env()},
            log_path=settings.home / "logs" / "stream-canary.log",
        ).start()
        consumer.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), timeout=90, what="ready")
        feeder = _Feeder(stream)
        feeder.start()
        challenger = registry.resolve("challenger")
        limits = stream
        thresholds = (
            f"errors +{limits.canary_max_error_ratio_increase:.0%}, agreement >= {limits.canary_min_agreement:.0%}, "
            f"shift <= {limits.canary_max_probability_shift}, AUC drop <= {limits.canary_max_estimated_auc_drop}"
        )
        console.print(
            f"stream PID {consumer.pid} at 500 events/s; the gate judges every {INTERVAL_S:g} s: {thresholds}"
        )
        for label, version in (
            ("the challenger", challenger),
            ("a copy of it whose schema refuses amounts over 20", _broken_copy(registry, challenger)),
        ):
            plan = registry.start_canary(
                f"v{version}", weight=25, steps=(25, 100), interval_seconds=INTERVAL_S, failure_limit=2
            )
            console.print(f"[bold]canary {label}: v{version}[/], steps 25%, 100% against champion v{plan.champion}")
            with console.status("the gate judging each interval"):
                ended = CanaryController(stream, holder="demo").run(poll_seconds=0.2)
            assert ended is not None
            print_canary(ended)
            print_canary_decisions(registry.canary_log(plan))
        console.print(f"champion now v{registry.resolve('champion')}; `scorepipe canary status` shows the last plan")
    finally:
        if feeder is not None:
            feeder.stop()
        if consumer is not None:
            consumer.stop()
        broker.stop()


def _broken_copy(registry: Registry, version: int) -> int:
    """The version again, with a schema that refuses most amounts: it dead-letters what the champion scores."""
    bundle: ModelBundle = registry.load(version).bundle
    features = [f.model_copy(update={"max_value": 20.0}) if f.name == "amount" else f for f in bundle.schema.features]
    broken = dataclasses.replace(bundle, schema=bundle.schema.model_copy(update={"features": features}))
    return registry.register(broken, note="demo: a canary that dead-letters (amount <= 20 only)")


class _Feeder:
    """Live traffic: events at 500/s on a thread until stopped (bounded)."""

    def __init__(self, settings: Settings, rate: float = 500.0, most: int = 200_000) -> None:
        self.settings, self.rate, self.most = settings, rate, most
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, name="demo-feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _feed(self) -> None:
        from streaming.producer import produce

        produce(self.settings, count=self.most, rate=self.rate, seed=2031, malformed_share=0.01, stopping=self._stop)
