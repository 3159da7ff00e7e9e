"""The Prometheus metrics of a long-running scorer (stream consumer, and later the HTTP server).

Names follow Prometheus's rules: the ``scorepipe_`` prefix, base units as suffixes, ``_total`` on
counters, an ``_info`` gauge for the model in use, and labels of low cardinality only (model
version, predicted label, alias, stage, partition; never an event id).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from scoring.agreement import Agreement
from scoring.watcher import ReloadEvent

if TYPE_CHECKING:
    from scoring.live_drift import LiveDriftFigures

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
FEW = 16  # values observed one by one; more are counted with numpy in one pass
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
DIFF_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
ARM_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096)


class GateMetrics:
    """The canary controller's own figures: its decisions and the weight it set."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.decisions = Counter(
            "scorepipe_canary_decisions",
            "Canary judgements, by verdict (pass, fail, wait) and action (next_step, promoted, held, rolled_back)",
            ["verdict", "action"],
            registry=r,
        )
        self.weight = Gauge(
            "scorepipe_canary_weight", "Percent of keys the canary takes (0: none)", ["version"], registry=r
        )
        self.failures = Gauge("scorepipe_canary_failures", "Failed judgements of the running plan", registry=r)


class ScoringMetrics:
    """Every metric a scorer process exports, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("scorepipe_stream_events", "Events consumed, by outcome", ["outcome"], registry=r)
        self.predictions = Counter(
            "scorepipe_predictions",
            "Predictions made, by model version and predicted label",
            ["model_version", "label"],
            registry=r,
        )
        self.arm_events = Counter(
            "scorepipe_arm_events",
            "Events by arm of a split (champion, canary), version and outcome: predicted, rejected (by the "
            "model's validation), undecodable (not an event), error (the model failed)",
            ["arm", "model_version", "outcome"],
            registry=r,
        )
        self.arm_seconds = Histogram(
            "scorepipe_arm_score_seconds",
            "Time an arm's version took to decode and score its part of a micro-batch or request batch (what "
            "each of those events waited on it), by arm and version",
            ["arm", "model_version"],
            buckets=ARM_BUCKETS,
            registry=r,
        )
        self.canary_weight = Gauge(
            "scorepipe_canary_weight", "Percent of keys the canary takes (0: none)", ["version"], registry=r
        )
        self._canary_shown: str | None = None  # the canary version the gauge shows
        self.rate_limited = Counter(
            "scorepipe_http_rate_limited", "HTTP requests refused with 429: over the rate limit", registry=r
        )
        self.payload_log = Counter(
            "scorepipe_payload_log_entries",
            "Scoring exchanges for the payload log, by outcome: sent, failed (not acknowledged), dropped (queue full)",
            ["outcome"],
            registry=r,
        )
        self.feedback = Counter(
            "scorepipe_feedback_labels", "Labels received through the server's /feedback", registry=r
        )
        self.dead_letters = Counter(
            "scorepipe_dead_letters", "Events sent to the dead-letter topic, by stage", ["stage"], registry=r
        )
        self.rejected = Counter(
            "scorepipe_rejected_records", "HTTP records that could not be scored, by stage", ["stage"], registry=r
        )
        self.http_requests = Counter(
            "scorepipe_http_requests",
            "HTTP requests, by endpoint (route template), status code and model version",
            ["endpoint", "status", "model_version"],
            registry=r,
        )
        self.http_duration = Histogram(
            "scorepipe_http_request_duration_seconds",
            "HTTP request time in the server, by endpoint",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.batch_duration = Histogram(
            "scorepipe_stream_batch_duration_seconds",
            "Time to decode, score and send one micro-batch (acknowledgements arrive later)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "scorepipe_stream_in_flight_batches",
            "Micro-batches sent and not yet acknowledged by the broker",
            registry=r,
        )
        self.send_failures = Counter(
            "scorepipe_stream_send_failures",
            "Micro-batches whose results the broker did not acknowledge (re-read from their first offset)",
            registry=r,
        )
        self.commit_failures = Counter(
            "scorepipe_stream_commit_failures",
            "Offset commits the broker refused or lost (a later commit covers them)",
            registry=r,
        )
        self.latency = Histogram(
            "scorepipe_stream_event_latency_seconds",
            "From the Kafka record time of an event to the acknowledgement of its prediction",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.confidence = Histogram(
            "scorepipe_prediction_confidence",
            "Probability of the predicted label",
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "scorepipe_stream_consumer_lag",
            "Events on a partition not yet scored (end offset - next offset)",
            ["topic", "partition"],
            registry=r,
        )
        # Gauges say how to combine worker processes when metrics are multiprocess (``serve --workers N``).
        self.model_info = Gauge(
            "scorepipe_model_info",
            "The model version each alias is scoring with (1; 0 once replaced)",
            ["alias", "version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.model_origin = Gauge(
            "scorepipe_model_origin_info",
            "Where the version each alias scores with came from: local, or mlflow:NAME/VERSION (1; 0 once replaced)",
            ["alias", "version", "origin"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.small_frame_shortcut = Gauge(
            "scorepipe_small_frame_shortcut_active",
            "1 when the alias's model scores small frames with the verified tree shortcut, 0 when sklearn does",
            ["alias"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.compiled_trees = Gauge(
            "scorepipe_compiled_trees_active",
            "1 when the alias's model scores larger frames with its verified compiled trees, 0 when sklearn does",
            ["alias"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "scorepipe_model_reloads", "Models swapped in after an alias moved", ["alias"], registry=r
        )
        self.reload_failures = Counter(
            "scorepipe_model_reload_failures",
            "New versions refused (load, hash or schema failure)",
            ["alias"],
            registry=r,
        )
        pair = ["champion_version", "challenger_version"]
        self.shadow_rows = Counter(
            "scorepipe_shadow_rows_compared", "Rows scored by both champion and challenger", pair, registry=r
        )
        self.shadow_agreed = Counter(
            "scorepipe_shadow_label_agreements", "Compared rows where both predicted the same label", pair, registry=r
        )
        self.shadow_agreement = Gauge(
            "scorepipe_shadow_label_agreement_ratio",
            "Label agreement of the pair since this process started",
            pair,
            registry=r,
        )
        self.shadow_diff = Histogram(
            "scorepipe_shadow_proba_abs_diff",
            "Absolute difference in the positive-class probability",
            pair,
            buckets=DIFF_BUCKETS,
            registry=r,
        )
        self.shadow_errors = Counter(
            "scorepipe_shadow_errors",
            "Challenger failures, skipped without touching the champion",
            ["stage"],
            registry=r,
        )
        # Live drift: the scorer's last rows against the model's reference (monitoring.live_drift).
        self.feature_drift = Gauge(
            "scorepipe_feature_drift",
            "Live drift of each feature over the scorer's window against the model's training reference: the "
            "method's statistic (a distance; a p-value for ks and chisquare), as in the drift report",
            ["feature", "method"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.feature_drift_detected = Gauge(
            "scorepipe_feature_drift_detected",
            "1 when a feature's live drift crosses its threshold",
            ["feature"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.prediction_drift = Gauge(
            "scorepipe_prediction_drift",
            "Live drift of the model's outputs (positive-class probability, predicted label) against their "
            "values on the training reference",
            ["output", "method"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.live_drift_share = Gauge(
            "scorepipe_live_drift_share",
            "Share of features whose live drift crosses the threshold",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.live_prediction_drift = Gauge(
            "scorepipe_live_prediction_drift_detected",
            "1 when an output's live drift crosses its threshold",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.live_drift_rows = Gauge(
            "scorepipe_live_drift_window_rows",
            "Rows in the live drift window when last measured",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.live_drift_version = Gauge(
            "scorepipe_live_drift_model_version",
            "Model version the live drift window was measured for",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.live_drift_failures = Counter(
            "scorepipe_live_drift_failures", "Live drift measurements that failed (logged)", registry=r
        )
        self._info: dict[str, str] = {}
        self._origins: dict[str, tuple[str, str]] = {}  # alias -> (version, origin) now in service

    def show_canary_weight(self, version: int | None, weight: float) -> None:
        """``scorepipe_canary_weight``: the canary in force (None: none), and 0 for one no longer in force."""
        shown = str(version) if version is not None else None
        previous = self._canary_shown
        if previous is not None and previous != shown:
            self.canary_weight.labels(previous).set(0)
        self._canary_shown = shown
        if shown is not None:
            self.canary_weight.labels(shown).set(weight)

    def record_predictions(self, version: int, labels: np.ndarray, confidence: np.ndarray) -> None:
        counted: dict[str, int] = {}
        if len(labels) <= FEW:  # a lone request: counting in Python costs a fraction of np.unique
            for label in labels.tolist():
                counted[str(label)] = counted.get(str(label), 0) + 1
        else:
            values, counts = np.unique(labels.astype(str), return_counts=True)
            counted = dict(zip(values.tolist(), counts.tolist(), strict=True))
        for label, count in counted.items():
            self.predictions.labels(str(version), label).inc(count)
        observe_many(self.confidence, confidence)

    def record_latencies(self, seconds: np.ndarray) -> None:
        observe_many(self.latency, seconds)

    def set_model(
        self,
        alias: str,
        version: int | None,
        *,
        small_frame_shortcut: bool | None = None,
        compiled_trees: bool | None = None,
        origin: str | None = None,
    ) -> None:
        """Point ``scorepipe_model_info{alias}`` at ``version`` (None: no model for the alias), and its origin."""
        if small_frame_shortcut is not None:
            self.small_frame_shortcut.labels(alias).set(float(small_frame_shortcut))
        if compiled_trees is not None:
            self.compiled_trees.labels(alias).set(float(compiled_trees))
        old = self._info.pop(alias, None)
        if old is not None:
            self.model_info.labels(alias, old).set(0)  # what a multiprocess collector keeps of a removed series
            self.model_info.remove(alias, old)
        was = self._origins.pop(alias, None)
        if was is not None:
            self.model_origin.labels(alias, *was).set(0)
            self.model_origin.remove(alias, *was)
        if version is not None:
            self._info[alias] = str(version)
            self.model_info.labels(alias, str(version)).set(1)
            if origin is not None:
                self._origins[alias] = (str(version), origin)
                self.model_origin.labels(alias, str(version), origin).set(1)

    def on_reload(self, event: ReloadEvent) -> None:
        """A ``ModelWatcher`` listener: count reloads and refusals, and keep the info gauge current."""
        if event.ok:
            self.reloads.labels(event.alias).inc()
            self.set_model(
                event.alias,
                event.new_version,
                small_frame_shortcut=event.small_frame_shortcut,
                compiled_trees=event.compiled_trees,
                origin=event.origin,
            )
        else:
            self.reload_failures.labels(event.alias).inc()

    def record_agreement(self, batch: Agreement, diff: np.ndarray, total: Agreement) -> None:
        pair = (str(batch.champion_version), str(batch.challenger_version))
        self.shadow_rows.labels(*pair).inc(batch.rows)
        self.shadow_agreed.labels(*pair).inc(batch.agreed)
        if total.label_agreement is not None:
            self.shadow_agreement.labels(*pair).set(total.label_agreement)
        observe_many(self.shadow_diff.labels(*pair), diff)

    def show_live_drift(self, figures: LiveDriftFigures) -> None:
        """One measurement of the live drift window: each feature's and output's statistic, the share drifted."""
        for stat in figures.features:
            self.feature_drift.labels(stat.column, stat.method).set(_figure(stat.score))
            self.feature_drift_detected.labels(stat.column).set(float(stat.drifted))
        for stat in figures.outputs:
            self.prediction_drift.labels(stat.column, stat.method).set(_figure(stat.score))
        self.live_drift_share.set(figures.drifted_share)
        self.live_prediction_drift.set(float(figures.prediction_drift))
        self.live_drift_rows.set(figures.rows)
        self.live_drift_version.set(figures.version)

    def clear_live_drift(self) -> None:
        """No measurement (too few recent rows): no figure at all rather than the last one, which went stale."""
        self.feature_drift.clear()
        self.feature_drift_detected.clear()
        self.prediction_drift.clear()
        for gauge in (self.live_drift_share, self.live_prediction_drift, self.live_drift_rows):
            gauge.set(float("nan"))

    def exposition(self) -> bytes:
        """The Prometheus text of this process, or of every worker when metrics are multiprocess.

        ``scorepipe serve --workers N`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, so
        each worker writes its samples to files there and any worker's ``/metrics`` reads them all.
        """
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=directory)
        return generate_latest(combined)

    def snapshot(self) -> dict[str, Any]:
        """Current sample values by name and labels, for tests and status lines."""
        out: dict[str, Any] = {}
        for metric in self.registry.collect():
            for sample in metric.samples:
                key = sample.name + ("{" + ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())) + "}")
                out[key] = sample.value
        return out


def _figure(score: float | None) -> float:
    return float("nan") if score is None else score


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """``histogram.observe`` for every value, as one vectorized update per bucket.

    A micro-batch has thousands of events; observing them one by one would cost more than the
    scoring itself. This fills the same buckets ``observe`` would (a value lands in the first
    bucket whose upper bound is >= it), a unit test holds the two equal.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return
    if values.size <= FEW:
        for value in values.tolist():
            histogram.observe(value)
        return
    bounds = np.asarray(histogram._upper_bounds)  # noqa: SLF001 - prometheus_client keeps them here
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=True):  # noqa: SLF001
        if count:
            bucket.inc(count)
    histogram._sum.inc(float(values.sum()))  # noqa: SLF001
