"""The small-frame shortcut: used only where it reproduces sklearn's predict_proba bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OrdinalEncoder, StandardScaler

from scoring import Scorer, synthetic
from scoring.fastpath import MAX_ROWS, ONE_CALL_ROWS, SmallFramePredictor
from scoring.training import bundle_from_estimator, train_bundle
from scoring.validation import validate


def _awkward_rows(schema, n: int, seed: int) -> pd.DataFrame:
    """Incoming rows with missing numerics, missing and unknown categories sprinkled in."""
    frame = synthetic.generate(n, seed=seed, drifted=True, with_target=False)[schema.names]
    rng = np.random.default_rng(seed)
    for spec in schema.features:
        holes = rng.random(n) < 0.05
        if spec.kind == "numeric":
            frame.loc[holes, spec.name] = np.nan
        else:
            frame[spec.name] = frame[spec.name].astype(object)
            frame.loc[holes, spec.name] = None
            frame.loc[rng.random(n) < 0.05, spec.name] = "never-seen"
    return frame


def _same_on_small_frames(predictor: SmallFramePredictor, pipeline, features: pd.DataFrame) -> None:
    expected = pipeline.predict_proba(features)
    # both ways through the trees: all in one call (up to ONE_CALL_ROWS rows), and tree by tree
    for size in (1, 7, ONE_CALL_ROWS, ONE_CALL_ROWS + 1, MAX_ROWS):
        got = np.vstack([predictor.predict_proba(features.iloc[i : i + size]) for i in range(0, len(features), size)])
        np.testing.assert_array_equal(got, expected)  # exact: no tolerance


def test_default_pipeline_is_replayed_exactly_on_missing_and_unknown_values(bundle):
    predictor = SmallFramePredictor.verified(bundle.pipeline, bundle.schema, bundle.reference)
    assert predictor is not None
    features = validate(_awkward_rows(bundle.schema, 3_000, seed=5), bundle.schema).features
    assert features.isna().any().any()
    _same_on_small_frames(predictor, bundle.pipeline, features)


def test_multiclass_trees_are_replayed_exactly():
    frame = synthetic.generate(3_000, seed=21)
    frame["segment"] = np.select([frame["amount"] < 40, frame["amount"] < 200], ["low", "mid"], "high")
    features = [f for f in synthetic.FEATURES if f != "amount"]
    bundle = train_bundle(frame, "segment", features=features, reference_rows=300, seed=2)
    assert len(bundle.classes) == 3
    predictor = SmallFramePredictor.verified(bundle.pipeline, bundle.schema, bundle.reference)
    assert predictor is not None
    incoming = validate(_awkward_rows(bundle.schema, 800, seed=6), bundle.schema).features
    _same_on_small_frames(predictor, bundle.pipeline, incoming)


def test_other_pipelines_are_left_to_sklearn(training_frame):
    reference = training_frame.iloc[:400]
    numeric = list(synthetic.NUMERIC_FEATURES)
    estimator = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        reference[numeric].fillna(0), reference[synthetic.TARGET]
    )
    other = bundle_from_estimator(estimator, reference[[*numeric, synthetic.TARGET]].fillna(0), target=synthetic.TARGET)
    assert SmallFramePredictor.verified(other.pipeline, other.schema, other.reference) is None
    scorer = Scorer(other, version=1)
    scored = scorer.score(reference[numeric].fillna(0).head(3))
    np.testing.assert_array_equal(
        scored["proba_1"].to_numpy(), estimator.predict_proba(reference[numeric].fillna(0).head(3))[:, 1]
    )


def test_an_encoder_that_raises_on_unknown_categories_is_not_replayed(bundle):
    import copy

    pipeline = copy.deepcopy(bundle.pipeline)
    encoder: OrdinalEncoder = pipeline.steps[0][1].named_transformers_["categorical"]
    encoder.handle_unknown = "error"
    assert SmallFramePredictor.verified(pipeline, bundle.schema, bundle.reference) is None


def last_bit_off(exact):
    """``exact`` (a method returning probabilities, or None) with its last probability one ulp higher."""

    def off_by_one_ulp(self, *args):
        proba = exact(self, *args)
        if proba is not None:
            proba[..., -1] = np.nextafter(proba[..., -1], 2.0)
        return proba

    return off_by_one_ulp


def test_a_replay_that_differs_in_the_last_bit_is_refused(bundle, monkeypatch, caplog):
    monkeypatch.setattr(SmallFramePredictor, "predict_proba", last_bit_off(SmallFramePredictor.predict_proba))
    assert SmallFramePredictor.verified(bundle.pipeline, bundle.schema, bundle.reference) is None
    assert "differs from predict_proba" in caplog.text


@pytest.mark.parametrize("rows", [1, 40, MAX_ROWS + 1])
def test_scorer_output_is_the_same_with_and_without_the_shortcut(bundle, rows):
    incoming = _awkward_rows(bundle.schema, rows, seed=rows)
    fast = Scorer(bundle, version=1, clock=lambda: pd.Timestamp("2026-01-01", tz="UTC"))
    plain = Scorer(bundle, version=1, clock=lambda: pd.Timestamp("2026-01-01", tz="UTC"))
    plain._small_frames = None
    assert fast._small_frames is not None
    pd.testing.assert_frame_equal(fast.score(incoming), plain.score(incoming), check_exact=True)


def test_one_call_through_all_trees_is_what_small_frames_use(bundle, monkeypatch):
    """Up to ONE_CALL_ROWS rows the trees are not visited one Python call at a time."""
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    predictor = SmallFramePredictor.verified(bundle.pipeline, bundle.schema, bundle.reference)
    features = validate(_awkward_rows(bundle.schema, ONE_CALL_ROWS + 1, seed=9), bundle.schema).features
    calls = []
    real = TreePredictor.predict
    monkeypatch.setattr(TreePredictor, "predict", lambda self, *a: calls.append(1) or real(self, *a))
    predictor.predict_proba(features.head(ONE_CALL_ROWS))
    assert calls == []
    predictor.predict_proba(features)
    assert len(calls) == len(bundle.pipeline[-1]._predictors)  # one per tree above the bound
