"""The gate on live traffic: a real broker, a `scorepipe stream` process, its /metrics, its live window.

The controller reads the stream's own counters and rows, and acts on the plan the stream follows:
a canary that dead-letters is rolled back within two intervals and every key returns to the
champion; a good canary walks through every step to champion and the stream scores with it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
from datetime import datetime, timedelta

import pytest

from devservers.process import ManagedProcess, free_port
from gate.controller import CanaryController
from scoring import Registry
from streaming.producer import produce
from streaming.topics import assigned_partitions, ensure_topics, read_topic
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def tight(bundle):
    """A canary whose schema refuses most amounts: it dead-letters what the champion scores."""
    features = [f.model_copy(update={"max_value": 20.0}) if f.name == "amount" else f for f in bundle.schema.features]
    return dataclasses.replace(bundle, schema=bundle.schema.model_copy(update={"features": features}))


class Feeder:
    """Events at a steady rate until stopped (bounded), as live traffic."""

    def __init__(self, settings, rate: float = 400.0, most: int = 60_000) -> None:
        self.settings, self.rate, self.most = settings, rate, most
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._feed)

    def _feed(self) -> None:
        produce(self.settings, count=self.most, rate=self.rate, seed=71, stopping=self.stopping)

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=120)


def run_gate(settings, canary_bundle, *, steps, failure_limit):
    """A stream and a controller on one plan; returns the plan as the controller left it, the registry, the version.

    The stream logs every dead letter: its output goes to a file (a pipe nobody reads would fill and
    stop it).
    """
    registry = Registry(settings.registry_dir)
    version = registry.register(canary_bundle, note="canary")
    registry.start_canary(f"v{version}", weight=steps[0], steps=steps, interval_seconds=4, failure_limit=failure_limit)
    ensure_topics(settings)
    port = free_port()
    stream = ManagedProcess(
        "scorepipe stream",
        [sys.executable, "-m", "scorepipe.cli", "stream", "--metrics-port", str(port), "--client-id", "gate"],
        env={**os.environ, **settings.as_env()},
        log_path=settings.home / "stream.log",
    ).start()
    controller = CanaryController(
        settings.model_copy(update={"canary_metrics_urls": f"http://127.0.0.1:{port}/metrics"})
    )
    ended: list = []
    judge = threading.Thread(target=lambda: ended.append(controller.run(poll_seconds=0.2)))
    try:
        wait_for(
            lambda: assigned_partitions(settings) == set(range(settings.topic_partitions)),
            timeout=120,
            what="the stream to hold every partition",
        )
        with Feeder(settings):
            judge.start()
            judge.join(timeout=120)
            assert ended, "the controller did not end the plan within 120 s"
            # Keys keep flowing after the decision: the stream follows the outcome.
            mark = registry.canary().updated_at
            wait_for(
                lambda: len(scored_after(settings, mark)) >= 200, timeout=60, what="predictions after the decision"
            )
    except AssertionError as failed:
        raise AssertionError(f"{failed}\nthe stream's log:\n{stream.log_tail(60)}") from None
    finally:
        controller.stop()
        stream.stop(timeout=60)
    assert stream.process is not None and stream.process.returncode == 0, stream.log_tail(40)
    return ended[0], registry, version


def scored_after(settings, mark: str) -> list[dict]:
    """Predictions scored more than a follower's check (and a batch) after ``mark``: the outcome in force."""
    since = datetime.fromisoformat(mark) + timedelta(seconds=2)
    bodies = [json.loads(m.value) for m in read_topic(settings, settings.predictions_topic)]
    return [b for b in bodies if datetime.fromisoformat(b["scored_at"]) > since]


def test_a_canary_that_dead_letters_is_rolled_back_within_two_intervals(stream_settings, bundle):
    settings = stream_settings(
        min_roc_auc=0.5,
        model_check_seconds=0.2,
        live_window_seconds=1,
        canary_min_events=50,
        canary_min_agreement=0,
        canary_max_probability_shift=1,
        canary_max_estimated_auc_drop=1,
    )
    plan, registry, version = run_gate(settings, tight(bundle), steps=(30, 100), failure_limit=2)
    assert plan.state == "aborted" and plan.weight == 0 and registry.resolve("champion") == 1
    decisions = registry.canary_log()
    assert [d["action"] for d in decisions][-1] == "rolled_back" and len(decisions) <= 3  # a wait, then two failures
    error = next(c for c in decisions[-1]["checks"] if c["name"] == "error_ratio")
    assert error["verdict"] == "fail" and error["figure"] > settings.canary_max_error_ratio_increase
    late = scored_after(settings, plan.updated_at)
    assert late and all(p["arm"] == "champion" and p["model_version"] == 1 for p in late)


def test_a_good_canary_walks_every_step_to_champion_and_the_stream_follows(stream_settings, challenger_bundle):
    settings = stream_settings(
        min_roc_auc=0.5,
        model_check_seconds=0.2,
        live_window_seconds=1,
        canary_min_events=50,
        canary_min_agreement=0.5,
        canary_max_probability_shift=0.5,
        canary_max_estimated_auc_drop=0.5,
        # Latency is not this test's subject (a slow canary has its own): with another test worker on
        # the same two cores, the p95 of a few parts swings by more than the default 5 ms slack.
        canary_latency_slack_seconds=1.0,
    )
    plan, registry, version = run_gate(settings, challenger_bundle, steps=(20, 60), failure_limit=2)
    assert plan.state == "promoted" and registry.resolve("champion") == version
    judged = [d for d in registry.canary_log() if d["verdict"] != "wait"]
    assert [d["action"] for d in judged] == ["next_step", "promoted"], [(d["action"], d["reason"]) for d in judged]
    late = scored_after(settings, plan.updated_at)
    assert late and all(p["model_version"] == version and p["arm"] == "champion" for p in late)
