"""One record straight into the compiled trees: exactly what ``score`` gives a one-row frame, or not taken."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from scoring import Scorer, synthetic
from scoring.record_path import RecordPath
from scoring.scorer import SCORED_AT, ScorerOptions
from tests.scoring.test_compiled import _low_word_all_ones
from tests.scoring.test_fastpath import _awkward_rows, last_bit_off


def _records(frame: pd.DataFrame) -> list[dict]:
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def _same(fast: dict, slow: dict) -> None:
    assert list(fast) == list(slow)
    for key in slow:
        if key == SCORED_AT:
            assert type(fast[key]) is type(slow[key])
            continue
        a, b = fast[key], slow[key]
        assert type(a) is type(b), (key, type(a), type(b))
        if a is None or a is pd.NA or (isinstance(a, float) and math.isnan(a)):
            assert a is b or (isinstance(b, float) and math.isnan(b)), key
        else:
            assert a == b, key


@pytest.fixture(scope="module")
def scorers(bundle):
    fast, frames = Scorer(bundle, 1), Scorer(bundle, 1, options=ScorerOptions(compiled_trees=False))
    assert fast._compiled is not None and fast._compiled.records is not None, fast.compiled_trees_reason
    return fast, frames


def test_clean_records_score_exactly_as_a_one_row_frame_and_take_the_record_path(scorers, bundle, monkeypatch):
    fast, frames = scorers
    rows = _awkward_rows(bundle.schema, 400, seed=12)
    rows["transaction_id"] = [f"t{i}" for i in range(len(rows))]
    rows["batch"] = 7  # an int extra: numpy's int64 in a frame, and here too
    taken = []
    real = RecordPath.proba

    def counting(self, record):
        got = real(self, record)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(RecordPath, "proba", counting)
    for record in _records(rows):
        _same(fast.score_one(dict(record)), frames.score_one(dict(record)))
    assert sum(taken) >= 100  # a fair share of the awkward rows are clean records: the premise of the comparison
    taken.clear()
    for record in _records(synthetic.generate(200, seed=13, with_target=False)):
        _same(fast.score_one(dict(record)), frames.score_one(dict(record)))
    assert all(taken) and len(taken) == 200  # every ordinary record takes the record path


@pytest.mark.parametrize(
    "change",
    [
        {"amount": -5.0},  # below its minimum: rejected, with the frame path's reason
        {"amount": True},  # a bool is not a number here
        {"channel": 7},  # an int category
        {"amount": "12.5"},  # a number as text: the frame path parses it
        {"amount": math.inf},
        {"prediction": 1},  # an output column in the input
        {"tags": ["a"]},  # an extra value pandas would keep as an object
        {"amount": _low_word_all_ones(100.0)},  # the library would read it as missing
    ],
)
def test_other_records_go_through_the_frame_path(scorers, change, monkeypatch):
    fast, frames = scorers
    record = _records(synthetic.generate(1, seed=3, with_target=False))[0]
    record.update(change)
    assert fast._one_record(record) is None  # not a clean record: the frame path scores it
    _same(fast.score_one(dict(record)), frames.score_one(dict(record)))


def test_a_missing_feature_goes_through_the_frame_path_which_names_it(scorers):
    from scoring import SchemaError

    fast, _ = scorers
    record = _records(synthetic.generate(1, seed=4, with_target=False))[0]
    del record["amount"]
    assert fast._one_record(record) is None
    with pytest.raises(SchemaError, match="'amount' is missing"):
        fast.score_one(record)


def test_a_record_path_that_differs_in_the_last_bit_is_not_used(bundle, monkeypatch, caplog):
    monkeypatch.setattr(RecordPath, "proba", last_bit_off(RecordPath.proba))
    scorer = Scorer(bundle, 1)
    assert scorer.compiled_trees and scorer._compiled.records is None
    assert "one-record scores differ" in caplog.text
    record = _records(synthetic.generate(1, seed=5, with_target=False))[0]
    expected = bundle.pipeline.predict_proba(pd.DataFrame([record])[bundle.schema.names])[0]
    assert scorer.score_one(record)["proba_1"] == expected[1]
