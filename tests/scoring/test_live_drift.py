"""The live drift window: what it keeps, what it measures, and that its figures are the drift report's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.live_drift import LiveDriftPublisher
from monitoring.metrics import ScoringMetrics
from scoring import Scorer
from scoring.drift_reference import drift_profile, output_columns, reference_outputs
from scoring.drift_stats import DriftMethods, categorical_stat, current_counts, numeric_stat
from scoring.errors import SettingsError
from scoring.live_drift import LiveDrift
from scoring.settings import LiveDriftSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _scored(scorer: Scorer, rows: pd.DataFrame) -> pd.DataFrame:
    return scorer.score(rows).drop(columns=["reject_reason"])


def test_the_window_keeps_the_last_rows_within_its_age(scorer, incoming_rows):
    clock = Clock()
    window = LiveDrift(DriftMethods(), rows=1000, seconds=60, min_rows=100, clock=clock)
    for seed in range(4):
        window.observe(scorer, _scored(scorer, incoming_rows(400, seed=seed)))
        clock.now += 10
    figures = window.measure()
    assert figures is not None and figures.rows == 1200  # whole batches: dropping one more would leave 800 < 1000
    clock.now += 45  # the first three batches are now older than 60 s
    figures = window.measure()
    assert figures is not None and figures.rows == 400
    clock.now += 60
    assert window.measure() is None  # nothing left within the age: no figure, rather than one from no rows


def test_a_new_version_starts_a_new_window(bundle, challenger_bundle, incoming_rows):
    first, second = Scorer(bundle, version=1), Scorer(challenger_bundle, version=2)
    window = LiveDrift(DriftMethods(), rows=10_000, seconds=3600, min_rows=100)
    window.observe(first, _scored(first, incoming_rows(600, seed=1)))
    window.observe(second, _scored(second, incoming_rows(300, seed=2)))
    figures = window.measure()
    assert figures is not None and figures.version == 2 and figures.rows == 300


def test_figures_are_the_reports_statistics_over_the_window(scorer, incoming_rows):
    """Each feature's figure is drift_stats' (the report's, equal to Evidently's) on the concatenated window."""
    window = LiveDrift(DriftMethods(), rows=10_000, seconds=3600, min_rows=100)
    batches = [_scored(scorer, incoming_rows(500, seed=s, drifted=True)) for s in (3, 4)]
    for batch in batches:
        window.observe(scorer, batch)
    figures = window.measure()
    assert figures is not None
    rows = pd.concat(batches)
    outputs = output_columns(scorer.bundle.classes)
    profile = drift_profile(scorer.bundle, reference_outputs(scorer))
    by_name = {s.column: s for s in [*figures.features, *figures.outputs]}
    assert set(by_name) == {*scorer.bundle.schema.names, *outputs}
    for spec in scorer.bundle.schema.numeric:
        values = rows[spec.name].to_numpy(dtype=float)
        expected = numeric_stat(
            spec.name, "wasserstein", 0.1, profile.numeric(spec.name), np.sort(values[np.isfinite(values)])
        )
        assert by_name[spec.name].score == expected.score
    for spec in scorer.bundle.schema.categorical:
        counts = current_counts(rows[spec.name].to_numpy(dtype=object))
        expected = categorical_stat(spec.name, "jensenshannon", 0.1, profile.categorical(spec.name), counts)
        assert by_name[spec.name].score == expected.score
    assert by_name["amount"].drifted and figures.drifted_share > 0.1 and figures.prediction_drift


def test_rows_observed_one_by_one_measure_as_the_same_rows_observed_as_a_frame(scorer, incoming_rows):
    """Lone records (`score_one`'s rows, kept as they are) give the figures of the same rows as one frame."""
    rows = incoming_rows(1200, seed=7, drifted=True)
    by_frame, by_rows, mixed = (LiveDrift(DriftMethods(), rows=10_000, seconds=3600) for _ in range(3))
    by_frame.observe(scorer, _scored(scorer, rows))
    records = rows.to_dict("records")
    scored_rows = [scorer.score_one(record) for record in records]
    assert scorer.record_path and all(r["reject_reason"] is None for r in scored_rows)
    for start in range(0, len(scored_rows), 3):
        by_rows.observe_rows(scorer, scored_rows[start : start + 3])
    mixed.observe_rows(scorer, scored_rows[:500])
    mixed.observe(scorer, _scored(scorer, rows.iloc[500:1000]))
    mixed.observe_rows(scorer, scored_rows[1000:])
    expected = by_frame.measure()
    assert expected is not None and expected.drifted_share > 0
    for window in (by_rows, mixed):
        figures = window.measure()
        assert figures is not None and figures.rows == 1200
        assert [(s.column, s.score, s.drifted) for s in [*figures.features, *figures.outputs]] == [
            (s.column, s.score, s.drifted) for s in [*expected.features, *expected.outputs]
        ]


def test_rows_observed_one_by_one_age_out_by_the_second(scorer, incoming_rows):
    clock = Clock()
    window = LiveDrift(DriftMethods(), rows=10_000, seconds=60, min_rows=10, clock=clock)
    scored_rows = [scorer.score_one(r) for r in incoming_rows(40, seed=8).to_dict("records")]
    for i, row in enumerate(scored_rows):
        window.observe_rows(scorer, [row])
        clock.now += 0.1 if i % 10 != 9 else 1.1  # ten rows a second, then a second's pause
    clock.now = 1000.0 + 60.5  # the first second's rows are past 60 s, the rest are not
    figures = window.measure()
    assert figures is not None and figures.rows == 30


def test_clean_rows_show_no_drift_and_drifted_rows_do(scorer, incoming_rows):
    clean, drifted = (LiveDrift(DriftMethods(), rows=5000, seconds=3600) for _ in range(2))
    clean.observe(scorer, _scored(scorer, incoming_rows(3000, seed=5)))
    drifted.observe(scorer, _scored(scorer, incoming_rows(3000, seed=5, drifted=True)))
    calm, shifted = clean.measure(), drifted.measure()
    assert calm is not None and calm.drifted_share == 0 and not calm.prediction_drift
    assert shifted is not None and {"amount", "channel"} <= {s.column for s in shifted.features if s.drifted}


def test_the_publisher_sets_the_gauges_and_survives_a_failed_measurement(scorer, incoming_rows):
    metrics = ScoringMetrics()
    window = LiveDrift(DriftMethods(), rows=5000, seconds=3600)
    publisher = LiveDriftPublisher(window, metrics, interval=3600)
    assert not publisher.publish()  # an empty window: nothing to show yet
    window.observe(scorer, _scored(scorer, incoming_rows(1000, seed=6, drifted=True)))
    assert publisher.publish()
    seen = metrics.snapshot()
    assert seen["scorepipe_feature_drift{feature=amount,method=wasserstein}"] > 0.1
    assert seen["scorepipe_feature_drift_detected{feature=amount}"] == 1.0
    assert seen["scorepipe_prediction_drift{method=wasserstein,output=proba_1}"] >= 0
    assert seen["scorepipe_live_drift_window_rows{}"] == 1000 and seen["scorepipe_live_drift_model_version{}"] == 1
    window.methods = DriftMethods(numeric="no-such-test")
    assert not publisher.publish()
    after = metrics.snapshot()
    assert after["scorepipe_live_drift_failures_total{}"] == 1
    assert (
        after["scorepipe_feature_drift{feature=amount,method=wasserstein}"]
        == seen["scorepipe_feature_drift{feature=amount,method=wasserstein}"]
    )


def test_a_window_with_too_few_recent_rows_shows_no_figure_rather_than_a_stale_one(scorer, incoming_rows):
    metrics, clock = ScoringMetrics(), Clock()
    window = LiveDrift(DriftMethods(), rows=5000, seconds=600, clock=clock)
    publisher = LiveDriftPublisher(window, metrics, interval=3600)
    window.observe(scorer, _scored(scorer, incoming_rows(1000, seed=6, drifted=True)))
    assert publisher.publish()
    assert metrics.snapshot()["scorepipe_live_drift_share{}"] > 0
    clock.now += 601  # traffic stopped: the rows aged out of the window
    assert not publisher.publish()
    after = metrics.snapshot()
    assert not any(key.startswith("scorepipe_feature_drift{") for key in after)
    assert np.isnan(after["scorepipe_live_drift_share{}"]) and np.isnan(after["scorepipe_live_drift_window_rows{}"])


def test_a_batch_larger_than_the_window_keeps_its_last_rows_only(scorer, incoming_rows):
    window = LiveDrift(DriftMethods(), rows=1000, seconds=3600)
    window.observe(scorer, _scored(scorer, incoming_rows(2500, seed=9)))
    figures = window.measure()
    assert figures is not None and figures.rows == 1000


def test_a_method_live_drift_does_not_compute_is_named_at_start():
    settings = LiveDriftSettings(drift_num_method="anderson")
    with pytest.raises(SettingsError, match=r"live drift computes wasserstein.*not 'anderson'.*SCOREPIPE_LIVE_DRIFT"):
        settings.live_drift_window()
    assert LiveDriftSettings(drift_num_method="anderson", live_drift=False).live_drift_window() is None
