"""Each check of the canary gate on hand-made evidence: its verdict, figure and threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gate import checks
from gate.traffic import quantile
from performance.arms import arm_auc_difference

CLASSES = ["0", "1"]


def test_error_ratio_waits_for_events_then_fails_a_rise_past_the_limit():
    waiting = checks.error_ratio((1000, 10), (50, 0), min_events=200, max_increase=0.02)
    assert waiting.verdict == "wait" and "50 events" in waiting.detail
    failing = checks.error_ratio((1000, 10), (400, 40), min_events=200, max_increase=0.02)
    assert failing.verdict == "fail" and abs(failing.figure - 0.09) < 1e-9 and failing.threshold == 0.02
    assert checks.error_ratio((1000, 10), (400, 5), min_events=200, max_increase=0.02).verdict == "pass"


def test_latency_waits_for_parts_skips_without_champion_traffic_and_fails_only_when_both_slower_and_later():
    judged = dict(min_parts=20, max_ratio=1.5, slack_seconds=0.005)
    assert checks.latency(0.01, 0.05, 5, **judged).verdict == "wait"
    assert checks.latency(None, 0.05, 50, **judged).verdict == "skip"
    slow = checks.latency(0.010, 0.030, 50, **judged)
    assert slow.verdict == "fail" and abs(slow.figure - 3.0) < 1e-9 and slow.threshold == 1.5
    assert checks.latency(0.0004, 0.0012, 50, **judged).verdict == "pass"  # 3x, but 0.8 ms: within the slack
    assert checks.latency(0.010, 0.014, 50, **judged).verdict == "pass"


def test_the_p95_of_buckets_interpolates_as_prometheus_does():
    inf = float("inf")
    assert quantile(0.95, {}) is None and quantile(0.95, {0.1: 0.0, inf: 0.0}) is None
    # 100 observations: 50 in (0, 0.1], 40 in (0.1, 0.2], 10 in (0.2, 0.4]: rank 95 is 5 of the last bucket's 10.
    assert quantile(0.95, {0.1: 50, 0.2: 90, 0.4: 100, inf: 100}) == 0.2 + 0.2 * 0.5
    assert quantile(0.5, {0.1: 50, 0.2: 90, 0.4: 100, inf: 100}) == 0.1
    assert quantile(0.95, {0.1: 50, 0.2: 60, inf: 100}) == 0.2  # in +Inf: the highest finite bound


def frame(p: np.ndarray, version: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prediction": np.where(p >= 0.5, "1", "0"),
            "proba_1": p,
            "proba_0": 1 - p,
            "model_version": version,
            "reject_reason": None,
        }
    )


def test_agreement_and_shift_compare_both_models_on_the_same_rows():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=500)
    same = checks.agreement(frame(p, 2), frame(p, 1), CLASSES, min_agreement=0.9, max_shift=0.1, min_rows=100)
    assert [c.verdict for c in same] == ["pass", "pass"] and same[0].figure == 1.0 and same[1].figure == 0.0
    flipped = checks.agreement(frame(1 - p, 2), frame(p, 1), CLASSES, min_agreement=0.9, max_shift=0.1, min_rows=100)
    assert [c.verdict for c in flipped] == ["fail", "fail"]
    few = checks.agreement(frame(p[:10], 2), frame(p[:10], 1), CLASSES, min_agreement=0.9, max_shift=0.1, min_rows=100)
    assert {c.verdict for c in few} == {"wait"}
    # Rows the champion would refuse (no probability) are left out, not counted as disagreements.
    refused = frame(p, 1).assign(proba_1=np.where(np.arange(500) < 100, np.nan, p))
    refused["reject_reason"] = np.where(np.arange(500) < 100, "amount: above 10000", None)
    partly = checks.agreement(frame(p, 2), refused, CLASSES, min_agreement=0.9, max_shift=0.1, min_rows=100)
    assert [c.verdict for c in partly] == ["pass", "pass"] and partly[1].figure == 0.0 and "400" in partly[0].detail


def test_estimated_performance_compares_what_each_arms_probabilities_promise():
    rng = np.random.default_rng(2)
    sure = np.concatenate([rng.uniform(0.9, 1, 300), rng.uniform(0, 0.1, 300)])
    unsure = rng.uniform(0.4, 0.6, 600)
    rows = pd.concat([frame(sure, 1), frame(unsure, 2)])
    worse = checks.estimated_performance(rows, (1, 2), CLASSES, max_drop=0.05, min_rows=100)
    assert worse.verdict == "fail" and worse.figure > 0.05
    fine = checks.estimated_performance(
        pd.concat([frame(sure, 1), frame(sure, 2)]), (1, 2), CLASSES, max_drop=0.05, min_rows=100
    )
    assert fine.verdict == "pass"
    assert checks.estimated_performance(frame(sure, 1), (1, 2), CLASSES, max_drop=0.05, min_rows=100).verdict == "wait"


def labelled(p: np.ndarray, y: np.ndarray, version: int) -> pd.DataFrame:
    return frame(p, version).assign(label=np.where(y, "1", "0"))


def test_labels_fail_a_significantly_worse_canary_and_wait_for_too_few_then_the_policy_decides():
    rng = np.random.default_rng(3)
    y = rng.uniform(size=2000) < 0.3
    good = np.clip(y * 0.6 + rng.uniform(0, 0.4, 2000), 0, 1)
    noise = rng.uniform(size=2000)
    worse = pd.concat([labelled(good[:1000], y[:1000], 1), labelled(noise[1000:], y[1000:], 2)])
    failed = checks.labels(worse, (1, 2), CLASSES, min_labels=200, waited_seconds=5, wait_limit=60, on_missing="fail")
    assert failed.verdict == "fail" and failed.figure < 0 and "significantly worse" in failed.detail
    alike = pd.concat([labelled(good[:1000], y[:1000], 1), labelled(good[1000:], y[1000:], 2)])
    assert (
        checks.labels(
            alike, (1, 2), CLASSES, min_labels=200, waited_seconds=5, wait_limit=60, on_missing="fail"
        ).verdict
        == "pass"
    )
    few = alike.iloc[:1050]  # 50 canary labels
    waiting = checks.labels(few, (1, 2), CLASSES, min_labels=200, waited_seconds=5, wait_limit=60, on_missing="fail")
    assert waiting.verdict == "wait" and "canary 50" in waiting.detail
    for policy in ("fail", "pass"):
        late = checks.labels(few, (1, 2), CLASSES, min_labels=200, waited_seconds=61, wait_limit=60, on_missing=policy)
        assert late.verdict == policy and f"policy ({policy})" in late.detail
    assert (
        checks.labels(None, (1, 2), CLASSES, min_labels=200, waited_seconds=0, wait_limit=60, on_missing="fail").verdict
        == "skip"
    )


def test_a_judgement_fails_if_any_check_fails_and_waits_if_any_waits():
    def c(v):
        return checks.Check("x", v, None, None, "")

    assert checks.overall([c("pass"), c("skip")]) == "pass"
    assert checks.overall([c("pass"), c("wait")]) == "wait"
    assert checks.overall([c("wait"), c("fail")]) == "fail"


def test_the_arms_bootstrap_is_an_interval_around_the_difference():
    rng = np.random.default_rng(4)
    y = rng.uniform(size=3000) < 0.5
    p = np.clip(y * 0.3 + rng.uniform(0, 0.7, 3000), 0, 1)
    same = arm_auc_difference((y[:1500], p[:1500]), (y[1500:], p[1500:]), seed=0)
    assert same["ci95_low"] < same["difference"] < same["ci95_high"] and not same["significantly_worse"]
    assert arm_auc_difference((y[:10], np.ones(10)), (np.ones(10, bool), p[:10])) is None  # one class only
