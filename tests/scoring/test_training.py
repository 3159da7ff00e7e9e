from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from scoring import ModelLoadError, QualityGateError, SchemaError, synthetic
from scoring.training import bundle_from_estimator, check_quality_gate, train_bundle


def test_default_model_learns_the_synthetic_signal(bundle):
    assert bundle.metrics["roc_auc"] > 0.8
    assert bundle.classes == [0, 1]
    assert bundle.schema.names == list(synthetic.FEATURES)
    assert bundle.schema.spec("hour_of_day").max_value == 23.0
    assert bundle.schema.spec("credit_score").nullable  # the generator leaves some scores missing
    assert set(bundle.reference.columns) == set(synthetic.FEATURES) | {synthetic.TARGET}
    assert len(bundle.reference) == 500
    assert bundle.reference[synthetic.TARGET].notna().all()


def test_training_is_deterministic(training_frame):
    small = training_frame.iloc[:2000]
    kwargs = dict(features=list(synthetic.FEATURES), seed=3, reference_rows=100)
    a = train_bundle(small, synthetic.TARGET, **kwargs)
    b = train_bundle(small, synthetic.TARGET, **kwargs)
    assert a.metrics == b.metrics
    rows = training_frame.iloc[2000:2100][list(synthetic.FEATURES)]
    np.testing.assert_array_equal(a.pipeline.predict_proba(rows), b.pipeline.predict_proba(rows))


def test_quality_gate():
    check_quality_gate({"roc_auc": 0.9}, 0.75)
    with pytest.raises(QualityGateError, match="roc_auc 0.6000 is below the quality gate 0.7500"):
        check_quality_gate({"roc_auc": 0.6}, 0.75)
    with pytest.raises(QualityGateError, match="--target"):
        check_quality_gate({}, 0.75)


def test_noise_labels_fail_the_gate(training_frame):
    noisy = training_frame.iloc[:3000].copy()
    noisy[synthetic.TARGET] = np.random.default_rng(0).integers(0, 2, len(noisy))
    bundle = train_bundle(noisy, synthetic.TARGET, features=list(synthetic.FEATURES), reference_rows=100)
    with pytest.raises(QualityGateError):
        check_quality_gate(bundle.metrics, 0.75)


def test_missing_target_is_named(training_frame):
    with pytest.raises(SchemaError, match="target column 'label' is missing"):
        train_bundle(training_frame, "label")


def test_user_model_without_predict_proba_is_refused(training_frame):
    model = LinearRegression().fit(training_frame[["amount"]], training_frame[synthetic.TARGET])
    with pytest.raises(ModelLoadError, match="not a fitted classifier"):
        bundle_from_estimator(model, training_frame)


def test_user_model_schema_comes_from_its_feature_names(training_frame):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(training_frame[["amount", "hour_of_day"]], training_frame[synthetic.TARGET])
    bundle = bundle_from_estimator(model, training_frame, target=synthetic.TARGET, reference_rows=50)
    assert bundle.schema.names == ["amount", "hour_of_day"]
    assert 0.5 < bundle.metrics["roc_auc"] <= 1.0
    assert list(bundle.reference.columns) == ["amount", "hour_of_day", synthetic.TARGET]


def test_synthetic_data_is_deterministic_prefix_stable_and_drift_differs():
    a = synthetic.generate(1000, seed=5)
    pd.testing.assert_frame_equal(a, synthetic.generate(70_000, seed=5).iloc[:1000])
    drifted = synthetic.generate(5000, seed=5, drifted=True)
    clean = synthetic.generate(5000, seed=5)
    assert drifted["amount"].median() > 1.5 * clean["amount"].median()
    assert (drifted["channel"] == "online").mean() > (clean["channel"] == "online").mean() + 0.2


def test_an_id_column_left_among_the_features_is_named_before_training():
    frame = synthetic.generate(1_000, seed=3)
    with pytest.raises(SchemaError, match=r"transaction_id: 1,000 distinct values; .* at most 255") as refused:
        train_bundle(frame, synthetic.TARGET)  # every column but the target, the id included
    assert refused.value.where == "training data"
