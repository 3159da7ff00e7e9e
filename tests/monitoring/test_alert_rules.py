"""The alert rules in monitoring/alerts.yml: `promtool check rules`, and `promtool test rules` for every rule.

Each rule gets a case that fires and one that does not, with the exact summary it renders (the
model version included). The runbook lines are read from the rules, so only the rules hold them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES = Path(__file__).resolve().parents[2] / "monitoring" / "alerts.yml"
MODEL = {"series": 'scorepipe_model_info{alias="champion",version="4",instance="c:1",job="stream"}', "values": "1x40"}

# alert -> (input series, minutes at which it must not fire yet, minutes at which it fires, labels, summary)
CASES = {
    "ScorepipeDriftDetected": (
        [
            {"series": 'scorepipe_drift_detected{job="drift-report"}', "values": "0 0 1 1"},
            {"series": 'scorepipe_drift_model_version{job="drift-report"}', "values": "3x3"},
            {"series": 'scorepipe_drift_share_drifted_features{job="drift-report"}', "values": "0.05 0.05 0.41 0.41"},
        ],
        1,
        3,
        {"job": "drift-report"},
        "Drift against model v3: 41% of features drifted in the last report",
    ),
    "ScorepipeDriftReportStale": (
        [
            # pushed at t=0 (its value is the push's Unix time), then no run for 27 hours
            {"series": 'scorepipe_drift_report_last_run_timestamp_seconds{job="drift-report"}', "values": "0x1620"},
            {"series": 'scorepipe_drift_model_version{job="drift-report"}', "values": "3x1620"},
        ],
        25 * 60,
        27 * 60,
        {},
        "No drift report for model v3 in 1d 3h 0m 0s",
    ),
    "ScorepipePerformanceReportStale": (
        [
            {
                "series": 'scorepipe_performance_report_last_run_timestamp_seconds{job="performance-report"}',
                "values": "0x1620",
            },  # fmt: skip
            {"series": 'scorepipe_performance_model_version{job="performance-report"}', "values": "5x1620"},
        ],
        25 * 60,
        27 * 60,
        {},
        "No performance report for model v5 in 1d 3h 0m 0s",
    ),
    "ScorepipePerformanceDegraded": (
        [
            {"series": 'scorepipe_performance_degraded{job="performance-report"}', "values": "0 1"},
            {"series": 'scorepipe_performance_model_version{job="performance-report"}', "values": "5 5"},
            {"series": 'scorepipe_performance_roc_auc{job="performance-report"}', "values": "0.88 0.61"},
        ],
        0,
        1,
        {"job": "performance-report"},
        "Model v5 degraded: ROC AUC 0.610 on labelled rows",
    ),
    "ScorepipeConsumerLagHigh": (
        [
            # lag grows by 500 a minute from 2,000: above 10,000 from minute 17, firing 10 minutes later
            {
                "series": 'scorepipe_stream_consumer_lag{topic="features",partition="0",instance="c:1",job="stream"}',
                "values": "2000+500x40",
            },  # fmt: skip
            MODEL,
        ],
        20,
        30,
        {"topic": "features"},
        "17000 events behind on features and rising (model v4)",
    ),
    "ScorepipeDeadLetterRatioHigh": (
        [
            # 1,000 events a minute; dead letters 10 a minute (1%) for 15 minutes, then 100 a minute (10%)
            {
                "series": 'scorepipe_stream_events_total{outcome="scored",instance="c:1",job="stream"}',
                "values": "0+1000x40",
            },  # fmt: skip
            {
                "series": 'scorepipe_dead_letters_total{stage="decode",instance="c:1",job="stream"}',
                "values": "0+10x15 150+100x25",
            },  # fmt: skip
            MODEL,
        ],
        15,
        36,
        {"instance": "c:1"},
        "10% of events dead-lettered on c:1 (model v4)",
    ),
    "ScorepipeModelReloadRefused": (
        [
            {
                "series": 'scorepipe_model_reload_failures_total{alias="champion",instance="c:1",job="stream"}',
                "values": "0x10 1x10",
            },  # fmt: skip
            MODEL,
        ],
        5,
        12,
        {"alias": "champion", "instance": "c:1", "job": "stream"},
        "champion refused a new version on c:1; still scoring with v4",
    ),
    "ScorepipeConsumerNotReady": (
        [
            {"series": 'scorepipe_ready{instance="c:1",job="stream"}', "values": "1x5 0x10"},
            MODEL,
        ],
        8,
        12,
        {"instance": "c:1", "job": "stream"},
        "Stream consumer c:1 not ready for 5 minutes (model v4)",
    ),
    "ScorepipeLiveDataDrift": (
        [
            {"series": 'scorepipe_live_drift_share{instance="s:1",job="serve"}', "values": "0.05x5 0.41x20"},
            {"series": 'scorepipe_live_drift_model_version{instance="s:1",job="serve"}', "values": "4x25"},
        ],
        15,
        22,
        {"instance": "s:1"},
        "41% of features drifting in what s:1 scored for 15 minutes (model v4)",
    ),
    "ScorepipeLivePredictionDrift": (
        [
            {"series": 'scorepipe_live_prediction_drift_detected{instance="c:1",job="stream"}', "values": "0x5 1x20"},
            {"series": 'scorepipe_live_drift_model_version{instance="c:1",job="stream"}', "values": "4x25"},
        ],
        15,
        22,
        {"instance": "c:1"},
        "The predictions of c:1 drifted from the model's on its training reference for 15 minutes (model v4)",
    ),
    "ScorepipeHttp5xxRatioHigh": (
        [
            {
                "series": 'scorepipe_http_requests_total{endpoint="/predict",status="200",model_version="4"}',
                "values": "0+600x30",
            },  # fmt: skip
            {
                "series": 'scorepipe_http_requests_total{endpoint="/predict",status="500",model_version="4"}',
                "values": "0x10 0+30x20",
            },  # fmt: skip
        ],
        10,
        25,
        {"model_version": "4"},
        "4.762% of HTTP requests fail with 5xx on model v4",
    ),
    "ScorepipeHttpLatencyP99High": (
        [
            # 100 requests a minute under 50 ms; from minute 10 all of them between 0.5 and 1 s
            *[
                {
                    "series": f'scorepipe_http_request_duration_seconds_bucket{{endpoint="/predict",le="{le}"}}',
                    "values": "0+100x10 1000x30" if float(le) <= 0.5 else "0+100x40",
                }  # fmt: skip
                for le in ("0.05", "0.5", "1", "+Inf")
            ],
            MODEL,
        ],
        12,
        30,
        {},
        "HTTP p99 latency 995ms (model v4)",
    ),
    "ScorepipeCanaryRolledBack": (
        [
            {
                "series": 'scorepipe_canary_decisions_total{verdict="fail",action="rolled_back",job="canary"}',
                "values": "0x10 1x20",
            },
            {
                "series": 'scorepipe_canary_decisions_total{verdict="pass",action="next_step",job="canary"}',
                "values": "0+1x30",
            },
        ],
        8,
        12,
        {"job": "canary"},
        "The canary gate rolled a canary back (canary); the champion kept serving",
    ),
}


def rules():
    return {rule["alert"]: rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}


def promtool():
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: `make tools` installs Debian's prometheus package, which has it")
    return found


def test_the_rules_are_valid():
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(rules()) == set(CASES)  # every rule has its cases, and every case a rule
    for name, rule in rules().items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["runbook"], name


def test_every_rule_fires_when_it_should_and_not_before(tmp_path):
    tests = []
    for name, (series, quiet_at, firing_at, labels, summary) in CASES.items():
        rule = rules()[name]
        expected = {
            "exp_labels": {"severity": rule["labels"]["severity"], **labels},
            "exp_annotations": {"summary": summary, "runbook": rule["annotations"]["runbook"]},
        }
        tests.append(
            {
                "name": name,
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": f"{quiet_at}m", "alertname": name, "exp_alerts": []},
                    {"eval_time": f"{firing_at}m", "alertname": name, "exp_alerts": [expected]},
                ],
            }
        )
    unit = tmp_path / "alerts_test.yml"
    unit.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}))
    result = subprocess.run([promtool(), "test", "rules", str(unit)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
