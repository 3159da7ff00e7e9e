from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring import FeatureSchema, FeatureSpec, SchemaError, learn_schema, validate

SCHEMA = FeatureSchema(
    features=[
        FeatureSpec(name="amount", kind="numeric", min_value=0.0),
        FeatureSpec(name="score", kind="numeric", nullable=True, min_value=300.0, max_value=850.0),
        FeatureSpec(name="channel", kind="categorical", categories=("atm", "online", "pos")),
        FeatureSpec(name="device", kind="categorical", categories=("mobile",), allow_unknown=True, nullable=True),
    ]
)


def frame(**overrides):
    base = {
        "amount": [10.0, 20.0, 30.0],
        "score": [700.0, np.nan, 800.0],
        "channel": ["pos", "online", "atm"],
        "device": ["mobile", None, "watch"],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_clean_frame_passes_with_types_cast():
    result = validate(frame(amount=[1, 2, 3]), SCHEMA)
    assert result.n_rejected == 0
    assert result.features["amount"].dtype == np.float64
    assert list(result.features.columns) == SCHEMA.names


def test_every_frame_level_problem_is_reported_at_once():
    bad = frame(amount=pd.to_datetime(["2026-01-01"] * 3), channel=[1.5, 2.5, 3.5]).drop(columns=["score"])
    with pytest.raises(SchemaError) as caught:
        validate(bad, SCHEMA)
    problems = caught.value.problems
    assert "column 'score' is missing" in problems
    assert any("'amount'" in p and "cannot be cast to a number" in p for p in problems)
    assert any("'channel'" in p and "expected text categories" in p for p in problems)
    assert len(problems) == 3


def test_text_column_where_nothing_parses_is_a_frame_problem_naming_an_example():
    with pytest.raises(SchemaError, match=r"'amount'.*no value parses as a number \(row 0: 'ten'\)"):
        validate(frame(amount=["ten", "twenty", None]), SCHEMA)


def test_extra_columns_rejected_only_when_asked():
    extra = frame(surprise=[1, 2, 3])
    assert validate(extra, SCHEMA).n_rejected == 0
    with pytest.raises(SchemaError, match="'surprise' is not a feature"):
        validate(extra, SCHEMA, extra="reject")


def test_row_problems_reject_only_those_rows_with_reasons():
    bad = frame(
        amount=[-1.0, np.inf, None],
        score=[900.0, 700.0, np.nan],
        channel=["pos", "bitcoin", None],
    )
    bad.index = [100, 101, 102]
    result = validate(bad, SCHEMA)
    reasons = result.reasons.to_dict()
    assert reasons[100] == "amount: -1.0 is below the minimum 0.0; score: 900.0 is above the maximum 850.0"
    assert reasons[101] == (
        "amount: inf is not finite; channel: unknown category 'bitcoin' (expected one of atm, online, pos)"
    )
    assert reasons[102] == "amount: missing value; channel: missing value"
    assert result.n_rejected == 3


def test_unparseable_text_in_a_numeric_column_rejects_that_row_only():
    result = validate(frame(amount=["12.5", "abc", 7]), SCHEMA)
    assert result.reasons.tolist() == [None, "amount: 'abc' is not a number", None]
    assert result.features["amount"].tolist()[0] == 12.5


def test_nullable_and_open_categories_are_respected():
    result = validate(frame(), SCHEMA)  # NaN score, None device, unknown device 'watch'
    assert result.n_rejected == 0


def test_input_is_not_mutated():
    original = frame(amount=["1", "2", "x"])
    copy = original.copy()
    validate(original, SCHEMA)
    pd.testing.assert_frame_equal(original, copy)


def test_learned_schema_bounds_non_negative_features_and_records_ranges():
    data = pd.DataFrame({"count": [0, 3, 5], "delta": [-2.0, 1.0, np.nan], "kind": ["a", "b", "a"]})
    schema = learn_schema(data)
    count, delta, kind = schema.features
    assert (count.kind, count.min_value, count.observed_max, count.nullable) == ("numeric", 0.0, 5.0, False)
    assert (delta.min_value, delta.observed_min, delta.nullable) == (None, -2.0, True)
    assert (kind.kind, kind.categories) == ("categorical", ("a", "b"))


def test_learn_schema_names_missing_training_columns():
    with pytest.raises(SchemaError, match="'nope' is not in the training data"):
        learn_schema(pd.DataFrame({"a": [1]}), ["a", "nope"])
