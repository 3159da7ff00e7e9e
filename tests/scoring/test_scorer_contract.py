"""The contract every scorer passes, whatever model it wraps (binary or multi-class, ours or the user's)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from scoring import Registry, Scorer, split_rejected, synthetic
from scoring.scorer import COMPILED_FROM_ROWS, ScorerOptions
from scoring.training import bundle_from_estimator

IGNORED = ["scored_at"]


def _user_pipeline(estimator):
    numeric = [f for f in synthetic.NUMERIC_FEATURES if f != "credit_score"]
    return make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), numeric),
                ("cat", OneHotEncoder(handle_unknown="ignore"), list(synthetic.CATEGORICAL_FEATURES)),
            ]
        ),
        estimator,
    )


def _features():
    return [f for f in synthetic.FEATURES if f != "credit_score"]


@pytest.fixture(scope="module", params=["default-binary", "user-logistic-binary", "user-forest-multiclass"])
def any_model(request, bundle, training_frame):
    """(bundle, version) of each kind of model the contract covers."""
    if request.param == "default-binary":
        return bundle, 1
    frame = training_frame.copy()
    if request.param == "user-logistic-binary":
        model = _user_pipeline(LogisticRegression(max_iter=500)).fit(frame[_features()], frame[synthetic.TARGET])
        return bundle_from_estimator(model, frame, target=synthetic.TARGET), 2
    frame["tier"] = pd.cut(frame["amount"], [-1, 30, 150, np.inf], labels=["low", "mid", "high"]).astype(str)
    model = _user_pipeline(RandomForestClassifier(n_estimators=20, random_state=0)).fit(
        frame[_features()], frame["tier"]
    )
    return bundle_from_estimator(model, frame, target="tier"), 3


PATHS = {
    "fast-paths-on": ScorerOptions(),
    "compiled-trees-only": ScorerOptions(small_frame_shortcut=False),  # every frame through the compiled trees
    "sklearn-only": ScorerOptions(small_frame_shortcut=False, compiled_trees=False),
}


@pytest.fixture(scope="module", params=list(PATHS))
def any_scorer(request, any_model):
    """Every contract test runs with the fast paths on, with the compiled trees alone, and with neither."""
    bundle, version = any_model
    return Scorer(bundle, version=version, options=PATHS[request.param])


def test_the_settings_decide_the_path_frames_take(bundle, incoming_rows):
    on, off = Scorer(bundle, 1), Scorer(bundle, 1, options=PATHS["sklearn-only"])
    assert on.small_frame_shortcut and on.compiled_trees, on.compiled_trees_reason
    assert not off.small_frame_shortcut and not off.compiled_trees and off.compiled_trees_reason == "off by setting"
    taken: list[tuple[str, int]] = []
    for name in ("_compiled", "_small_frames"):
        route = getattr(on, name)
        original = route.predict_proba
        route.predict_proba = lambda features, name=name, original=original: (
            taken.append((name, len(features))) or original(features)
        )
    for size in (5, COMPILED_FROM_ROWS + 1, 600):  # the shortcut's size, then the compiled trees'
        rows = incoming_rows(size)
        pd.testing.assert_frame_equal(on.score(rows).drop(columns=IGNORED), off.score(rows).drop(columns=IGNORED))
    assert taken == [("_small_frames", 5), ("_compiled", COMPILED_FROM_ROWS + 1), ("_compiled", 600)]


@pytest.fixture
def rows(incoming_rows):
    return incoming_rows(257)


def test_output_has_one_scored_row_per_input_row(any_scorer, rows):
    out = any_scorer.score(rows)
    assert len(out) == len(rows) and out.index.equals(rows.index)
    proba = out[any_scorer.proba_columns].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    classes = np.asarray(any_scorer.bundle.classes)
    assert (out["prediction"].to_numpy() == classes[proba.argmax(axis=1)]).all()
    np.testing.assert_allclose(out["confidence"], proba.max(axis=1))
    assert (out["model_version"] == any_scorer.version).all()
    assert out["reject_reason"].isna().all()
    assert out["transaction_id"].tolist() == rows["transaction_id"].tolist()


def test_scores_equal_the_raw_model(any_scorer, rows):
    out = any_scorer.score(rows)
    raw = any_scorer.bundle.pipeline.predict_proba(rows[any_scorer.bundle.schema.names])
    np.testing.assert_array_equal(out[any_scorer.proba_columns].to_numpy(), raw)


def test_input_frame_is_not_mutated(any_scorer, rows):
    before = rows.copy(deep=True)
    any_scorer.score(rows)
    pd.testing.assert_frame_equal(rows, before)


def test_column_order_does_not_change_scores(any_scorer, rows):
    shuffled = rows[list(reversed(rows.columns))]
    pd.testing.assert_frame_equal(
        any_scorer.score(rows).drop(columns=IGNORED),
        any_scorer.score(shuffled)[any_scorer.score(rows).columns].drop(columns=IGNORED),
    )


@pytest.mark.parametrize("chunk", [1, 7, 25])
def test_chunk_size_does_not_change_scores(any_scorer, rows, chunk):
    rows = rows.iloc[:60]
    whole = any_scorer.score(rows).drop(columns=IGNORED)
    parts = [any_scorer.score(rows.iloc[i : i + chunk]) for i in range(0, len(rows), chunk)]
    pd.testing.assert_frame_equal(pd.concat(parts).drop(columns=IGNORED), whole)


def test_json_events_score_like_the_batch_frame(any_scorer, rows):
    """The stream decodes JSON into a frame with its own decoder; the same rows get bit-identical scores."""
    from streaming.events import encode_event
    from streaming.transform import BatchTransform

    names = any_scorer.bundle.schema.names
    records = [
        SimpleNamespace(value=encode_event(f"event-{i}", {n: row[n] for n in names}), partition=0, offset=i)
        for i, row in enumerate(rows.to_dict(orient="records"))
    ]
    batch = BatchTransform(any_scorer.bundle.schema)(any_scorer, records)
    assert not batch.dead and batch.accepted is not None and len(batch.accepted) == len(rows)
    columns = any_scorer.proba_columns + ["prediction"]
    pd.testing.assert_frame_equal(
        batch.accepted[columns].reset_index(drop=True), any_scorer.score(rows)[columns].reset_index(drop=True)
    )


def test_survives_registry_save_and_load(any_scorer, rows, tmp_path):
    registry = Registry(tmp_path / "registry")
    version = registry.register(any_scorer.bundle)
    reloaded = Scorer.from_registry(registry, version)
    columns = any_scorer.proba_columns + ["prediction", "confidence"]
    pd.testing.assert_frame_equal(reloaded.score(rows)[columns], any_scorer.score(rows)[columns])


def test_bad_rows_are_rejected_and_the_rest_scored(any_scorer, rows):
    bad = rows.copy()
    bad.loc[3, "amount"] = -5.0
    bad.loc[10, "channel"] = "carrier_pigeon"
    out = any_scorer.score(bad)
    scored, rejected = split_rejected(out)
    assert list(rejected.index) == [3, 10]
    assert rejected.loc[3, "reject_reason"] == "amount: -5.0 is below the minimum 0.0"
    assert "unknown category 'carrier_pigeon'" in rejected.loc[10, "reject_reason"]
    assert rejected["prediction"].isna().all() and rejected[any_scorer.proba_columns].isna().all().all()
    clean = any_scorer.score(rows.drop(index=[3, 10]))
    pd.testing.assert_frame_equal(scored[any_scorer.proba_columns], clean[any_scorer.proba_columns])


def test_score_one_is_score_of_a_one_row_frame(any_scorer, rows):
    record = rows.iloc[5].to_dict()
    one = any_scorer.score_one(record)
    row = any_scorer.score(rows.iloc[[5]]).iloc[0]
    for column in any_scorer.proba_columns:
        assert one[column] == row[column]


def test_arrow_tables_are_accepted(any_scorer, rows):
    import pyarrow as pa

    out = any_scorer.score(pa.Table.from_pandas(rows, preserve_index=False))
    np.testing.assert_array_equal(
        out[any_scorer.proba_columns].to_numpy(), any_scorer.score(rows)[any_scorer.proba_columns].to_numpy()
    )
