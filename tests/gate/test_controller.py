"""The canary controller on a real registry, live window and /metrics, without a broker: step, promote, roll back."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gate.controller import CanaryController
from monitoring.metrics import GateMetrics
from scorepipe.settings import Settings
from scoring import RegistryError, Scorer, synthetic
from scoring.canary import CANARY, CHAMPION, canary_mask
from scoring.layout import EVENT_ID
from scoring.training import train_bundle


@pytest.fixture(scope="module")
def worse_bundle():
    """A model trained on shuffled labels, whose stored holdout figure claims it is good (it passes the gate)."""
    frame = synthetic.generate(4_000, seed=13)
    frame[synthetic.TARGET] = np.random.default_rng(0).permutation(frame[synthetic.TARGET].to_numpy())
    bundle = train_bundle(
        frame, synthetic.TARGET, features=list(synthetic.FEATURES), bounds=synthetic.BOUNDS, reference_rows=200, seed=13
    )
    return dataclasses.replace(bundle, metrics={**bundle.metrics, "roc_auc": 0.9})


def make_settings(tmp_path, registry, metrics_url, **overrides):
    values = dict(
        home=tmp_path / "home",
        registry=registry.root,
        min_roc_auc=0.5,
        canary_metrics_urls=metrics_url,
        canary_min_events=100,
        canary_min_labels=100,
        canary_label_wait_seconds=3600,
    )
    return Settings(**{**values, **overrides})


MODELS_NOT_COMPARED = {"canary_min_agreement": 0, "canary_max_probability_shift": 1, "canary_max_estimated_auc_drop": 1}
"""Thresholds no pair of models fails: the checks of agreement and estimated performance step aside."""


def last_check(registry, name: str) -> dict:
    """The named check of the registry's last canary decision."""
    return next(c for c in registry.canary_log()[-1]["checks"] if c["name"] == name)


def traffic(metrics, plan, *, events=1000, canary_failed=0.0, parts=50, champion_seconds=0.003, canary_seconds=0.003):
    """One interval of the scorers' counters: events by arm at the plan's weight, some failed; parts timed by arm."""
    canary = int(events * plan.weight / 100)
    metrics.arm_events.labels(CHAMPION, str(plan.champion), "predicted").inc(events - canary)
    metrics.arm_events.labels(CANARY, str(plan.canary), "predicted").inc(canary * (1 - canary_failed))
    metrics.arm_events.labels(CANARY, str(plan.canary), "rejected").inc(canary * canary_failed)
    metrics.arm_events.labels(CHAMPION, str(plan.champion), "undecodable").inc(events // 50)  # not held against either
    timings = np.random.default_rng(parts).uniform(0.8, 1.2, size=parts)
    for arm, version, seconds in ((CHAMPION, plan.champion, champion_seconds), (CANARY, plan.canary, canary_seconds)):
        for factor in timings if (arm == CHAMPION and plan.weight < 100) or arm == CANARY else ():
            metrics.arm_seconds.labels(arm, str(version)).observe(seconds * factor)


def live_window(settings, registry, plan, *, rows=4000, seed=40, labels: bool = True):
    """Rows scored by each arm into the live window, as the stream writes them; their true labels to a folder."""
    data = synthetic.generate(rows, seed=seed)
    ids = data[synthetic.ID_COLUMN].to_numpy()
    to_canary = canary_mask([i.encode() for i in ids], plan.weight)
    parts = []
    for version, take in ((plan.champion, ~to_canary), (plan.canary, to_canary)):
        picked = data[take]
        scored = Scorer.from_registry(registry, version).score(
            picked.drop(columns=[synthetic.TARGET, synthetic.ID_COLUMN])
        )
        parts.append(scored.assign(**{EVENT_ID: picked[synthetic.ID_COLUMN].to_numpy()}))
    window = settings.live_dir / "date=2026-12-07"
    window.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(pd.concat(parts), preserve_index=False), window / f"live-{seed}.parquet")
    if labels:
        truth = pd.DataFrame({EVENT_ID: ids, "label": data[synthetic.TARGET].astype(str).to_numpy()})
        (settings.home / "labels").mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.Table.from_pandas(truth, preserve_index=False), settings.home / "labels" / f"labels-{seed}.parquet"
        )


def judge_once(controller, metrics, registry, **traffic_options):
    plan = registry.canary()
    assert registry.take_canary_lease(controller.holder, 30)
    controller._start_baseline(plan)
    traffic(metrics, plan, **traffic_options)
    return controller.judge(plan)


def test_a_good_canary_goes_through_every_step_to_champion_and_every_decision_is_logged(
    tmp_path, make_registry, challenger_bundle, served
):
    metrics, url = served
    registry = make_registry(1)
    registry.register(challenger_bundle, note="canary")
    registry.start_canary("v2", weight=10, steps=(10, 50), interval_seconds=1, failure_limit=2)
    settings = make_settings(
        tmp_path,
        registry,
        url,
        canary_labels=str(tmp_path / "home" / "labels"),
        canary_min_agreement=0.5,
        canary_max_probability_shift=0.5,
        canary_max_estimated_auc_drop=0.5,
    )
    gate_metrics = GateMetrics()
    controller = CanaryController(settings, holder="a", metrics=gate_metrics)
    live_window(settings, registry, registry.canary(), seed=41)
    first = judge_once(controller, metrics, registry)
    assert (first.state, first.weight, first.step) == ("running", 50, 1)
    live_window(settings, registry, first, seed=42)
    last = judge_once(controller, metrics, registry)
    assert last.state == "promoted" and registry.resolve("champion") == 2
    log = registry.canary_log()
    assert [d["action"] for d in log] == ["next_step", "promoted"] and all(d["verdict"] == "pass" for d in log)
    for decision in log:
        by_name = {c["name"]: c for c in decision["checks"]}
        assert {"error_ratio", "latency_p95", "agreement", "probability_shift", "estimated_roc_auc", "labels"} == set(
            by_name
        )
        assert by_name["error_ratio"]["figure"] is not None and by_name["labels"]["figure"] is not None
        assert by_name["latency_p95"]["verdict"] == "pass" and 0.7 < by_name["latency_p95"]["figure"] < 1.4
    assert gate_metrics.decisions.labels("pass", "promoted")._value.get() == 1
    assert registry.rollback() == 1  # the old champion is one rollback away


def test_a_canary_that_dead_letters_is_rolled_back_at_the_failure_limit(
    tmp_path, make_registry, challenger_bundle, served
):
    metrics, url = served
    registry = make_registry(1)
    registry.register(challenger_bundle, note="canary")
    registry.start_canary("v2", weight=20, steps=(20, 100), interval_seconds=1, failure_limit=2)
    controller = CanaryController(
        make_settings(
            tmp_path,
            registry,
            url,
            **MODELS_NOT_COMPARED,
        ),
        holder="a",
    )
    live_window(settings := controller.settings, registry, registry.canary(), labels=False)
    held = judge_once(controller, metrics, registry, canary_failed=0.3)
    assert (held.state, held.weight, held.failures) == ("running", 20, 1)
    rolled = judge_once(controller, metrics, registry, canary_failed=0.3)
    assert (rolled.state, rolled.weight, rolled.failures) == ("aborted", 0.0, 2)
    assert registry.resolve("champion") == 1 and "error_ratio failed" in rolled.reason
    error = last_check(registry, "error_ratio")
    assert error["verdict"] == "fail" and error["figure"] > settings.canary_max_error_ratio_increase


def test_a_canary_slower_at_p95_is_held_then_rolled_back(tmp_path, make_registry, challenger_bundle, served):
    metrics, url = served
    registry = make_registry(1)
    registry.register(challenger_bundle, note="canary")
    registry.start_canary("v2", weight=20, steps=(20, 100), interval_seconds=1, failure_limit=2)
    settings = make_settings(tmp_path, registry, url, **MODELS_NOT_COMPARED)
    controller = CanaryController(settings, holder="a")
    live_window(settings, registry, registry.canary(), labels=False)
    held = judge_once(controller, metrics, registry, champion_seconds=0.004, canary_seconds=0.040)
    assert (held.state, held.failures) == ("running", 1)
    latency = last_check(registry, "latency_p95")
    assert latency["verdict"] == "fail" and 5 < latency["figure"] < 20, latency
    rolled = judge_once(controller, metrics, registry, champion_seconds=0.004, canary_seconds=0.040)
    assert rolled.state == "aborted" and "latency_p95 failed" in rolled.reason


def test_a_canary_significantly_worse_on_labels_is_rolled_back(tmp_path, make_registry, worse_bundle, served):
    metrics, url = served
    registry = make_registry(1)
    registry.register(worse_bundle, note="worse")
    registry.start_canary("v2", weight=50, steps=(50, 100), interval_seconds=1, failure_limit=1)
    settings = make_settings(
        tmp_path,
        registry,
        url,
        canary_labels=str(tmp_path / "home" / "labels"),
        **MODELS_NOT_COMPARED,
    )
    controller = CanaryController(settings, holder="a")
    live_window(settings, registry, registry.canary(), rows=4000)
    rolled = judge_once(controller, metrics, registry)
    assert rolled.state == "aborted" and registry.resolve("champion") == 1
    labels = last_check(registry, "labels")
    assert labels["verdict"] == "fail" and "significantly worse" in labels["detail"]


def test_too_few_labels_hold_the_step_and_say_so(tmp_path, make_registry, challenger_bundle, served):
    metrics, url = served
    registry = make_registry(1)
    registry.register(challenger_bundle, note="canary")
    registry.start_canary("v2", weight=10, steps=(10, 100), interval_seconds=1, failure_limit=2)
    settings = make_settings(
        tmp_path,
        registry,
        url,
        canary_labels=str(tmp_path / "home" / "labels"),
        canary_min_labels=5000,
        **MODELS_NOT_COMPARED,
    )
    controller = CanaryController(settings, holder="a")
    live_window(settings, registry, registry.canary(), rows=2000)
    held = judge_once(controller, metrics, registry)
    assert (held.state, held.weight, held.failures) == ("running", 10, 0)
    decision = registry.canary_log()[-1]
    assert decision["verdict"] == "wait" and decision["action"] == "held" and "5000 each needed" in decision["reason"]


def test_two_controllers_never_both_act(tmp_path, make_registry, challenger_bundle, served):
    metrics, url = served
    registry = make_registry(1)
    registry.register(challenger_bundle, note="canary")
    registry.start_canary("v2", weight=10, steps=(10, 100), interval_seconds=1)
    settings = make_settings(tmp_path, registry, url)
    first, second = CanaryController(settings, holder="a"), CanaryController(settings, holder="b")
    assert registry.take_canary_lease("a", 30)
    assert not registry.take_canary_lease("b", 30)
    with pytest.raises(RegistryError, match="no longer holds the canary lease"):
        registry.update_canary(lambda p: p.with_changes(weight=100), decision={"x": 1}, holder="b")
    assert registry.canary().weight == 10 and registry.canary_log() == []
    registry.release_canary_lease("a")
    assert registry.take_canary_lease("b", 30) and not registry.take_canary_lease("a", 30)
    del first, second
