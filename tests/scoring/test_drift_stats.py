"""Drift statistics from a reference profile equal Evidently's own, method by method, to 1e-9."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evidently.legacy.calculations.stattests import get_stattest
from evidently.legacy.core import ColumnType

from scoring.drift_stats import (
    CATEGORICAL_METHODS,
    NUMERIC_METHODS,
    categorical_stat,
    current_counts,
    is_drift,
    numeric_stat,
    sorted_finite,
)
from scoring.profile import CategoricalProfile, NumericProfile, ReferenceProfile

RNG = np.random.default_rng(7)
N, M = 4000, 25_000


def _with_gaps(values: np.ndarray, share: float, fill: float = np.nan) -> np.ndarray:
    values = values.copy()
    values[RNG.random(len(values)) < share] = fill
    return values


NUMERIC_CASES = {
    "shifted normal": (RNG.normal(0, 1, N), RNG.normal(0.3, 1.2, M)),
    "same distribution": (RNG.normal(5, 2, N), RNG.normal(5, 2, M)),
    "missing and infinite values": (
        _with_gaps(RNG.exponential(2, N), 0.1),
        _with_gaps(RNG.exponential(2.4, M), 0.05, np.inf),
    ),
    "few distinct values": (RNG.integers(0, 8, N).astype(float), RNG.integers(0, 11, M).astype(float)),
    "ties in a continuous column": (np.round(RNG.normal(0, 1, N), 1), np.round(RNG.normal(0.1, 1, M), 1)),
    "small samples": (RNG.normal(0, 1, 300), RNG.normal(0.2, 1, 150)),
    "current beyond the reference's range": (RNG.uniform(0, 1, N), RNG.uniform(0.5, 3, M)),
}


def _evidently(method: str, kind: ColumnType, reference: pd.Series, current: pd.Series, threshold: float = 0.1):
    """What Evidently's drift metric computes: infinities and missing values dropped, then the registered test."""
    reference = reference.replace([np.inf, -np.inf], np.nan).dropna()
    current = current.replace([np.inf, -np.inf], np.nan).dropna()
    test = get_stattest(reference, current, kind, method)
    return test.func(reference.copy(), current.copy(), kind, threshold)


def _ours_numeric(method: str, reference: np.ndarray, current: np.ndarray, threshold: float = 0.1):
    profile = ReferenceProfile.build(pd.DataFrame({"x": reference}), numeric=["x"], categorical=[])
    restored = ReferenceProfile.from_bytes(profile.to_bytes())  # as a registered version stores it
    block, kept = sorted_finite(current[None, :].copy())
    return numeric_stat("x", method, threshold, restored.numeric("x"), block[0, : kept[0]])


@pytest.mark.parametrize("method", NUMERIC_METHODS)
@pytest.mark.parametrize("case", list(NUMERIC_CASES))
def test_numeric_statistics_equal_evidentlys(method, case):
    reference, current = NUMERIC_CASES[case]
    theirs, their_verdict = _evidently(method, ColumnType.Numerical, pd.Series(reference), pd.Series(current))
    ours = _ours_numeric(method, reference, current)
    assert ours.score == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    assert ours.drifted == bool(their_verdict)


CATEGORIES = np.array(["card", "wire", "cash", "crypto", "check"], dtype=object)
CATEGORICAL_CASES = {
    "shifted shares": (RNG.choice(CATEGORIES[:4], N), RNG.choice(CATEGORIES[:4], M, p=[0.4, 0.3, 0.2, 0.1])),
    "a new category": (RNG.choice(CATEGORIES[:4], N), RNG.choice(CATEGORIES, M)),
    "a category gone, missing values": (
        np.where(RNG.random(N) < 0.1, None, RNG.choice(CATEGORIES, N)),
        RNG.choice(CATEGORIES[:3], M),
    ),
    "same shares": (RNG.choice(CATEGORIES, N), RNG.choice(CATEGORIES, M)),
}


@pytest.mark.parametrize("method", CATEGORICAL_METHODS)
@pytest.mark.parametrize("case", list(CATEGORICAL_CASES))
def test_categorical_statistics_equal_evidentlys(method, case):
    reference, current = CATEGORICAL_CASES[case]
    theirs, their_verdict = _evidently(method, ColumnType.Categorical, pd.Series(reference), pd.Series(current))
    profile = ReferenceProfile.build(pd.DataFrame({"c": reference}), numeric=[], categorical=["c"])
    ours = categorical_stat("c", method, 0.1, ReferenceProfile.from_bytes(profile.to_bytes()).categorical("c"),
                            current_counts(current))  # fmt: skip
    assert ours.score == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    assert ours.drifted == bool(their_verdict)


def test_a_block_sorts_each_column_and_leaves_out_missing_values():
    block = np.array([[3.0, np.nan, 1.0, np.inf], [-np.inf, 2.0, 0.5, 9.0]])
    sorted_block, kept = sorted_finite(block)
    assert kept.tolist() == [2, 3]
    assert sorted_block[0, :2].tolist() == [1.0, 3.0] and sorted_block[1, :3].tolist() == [0.5, 2.0, 9.0]


def test_a_column_with_no_current_value_counts_as_drifted_and_says_why():
    reference = NumericProfile(np.arange(100, dtype=float), missing=0)
    stat = numeric_stat("amount", "wasserstein", 0.1, reference, np.array([]))
    assert stat.score is None and stat.drifted and stat.note == "no values in the current data"
    empty = categorical_stat("channel", "jensenshannon", 0.1, CategoricalProfile({"web": 3}, 0), {})
    assert empty.score is None and empty.drifted


def test_an_unknown_method_is_refused_by_name():
    with pytest.raises(ValueError, match="'anderson' is not a numeric drift method"):
        numeric_stat("x", "anderson", 0.1, NumericProfile(np.arange(5.0), 0), np.arange(5.0))


def test_p_value_tests_drift_below_the_threshold_and_distances_above():
    assert is_drift("ks", 0.05, 0.05) and not is_drift("ks", 0.06, 0.05)
    assert not is_drift("chisquare", 0.05, 0.05) and is_drift("chisquare", 0.04, 0.05)
    assert is_drift("wasserstein", 0.1, 0.1) and not is_drift("psi", 0.09, 0.1)


def test_a_profile_describes_every_reference_row_and_joins_only_a_profile_of_the_same_rows():
    frame = pd.DataFrame({"x": _with_gaps(RNG.normal(0, 1, 5000), 0.1), "c": RNG.choice(CATEGORIES, 5000)})
    profile = ReferenceProfile.build(frame, numeric=["x"], categorical=["c"])
    finite = frame["x"].dropna().to_numpy()
    assert profile.rows == 5000 and profile.numeric("x").missing == 5000 - len(finite)
    assert np.array_equal(profile.numeric("x").values, np.sort(finite))
    assert profile.categorical("c").counts == frame["c"].value_counts().to_dict()
    outputs = ReferenceProfile.build(frame.head(10), numeric=["x"], categorical=[])
    with pytest.raises(ValueError, match="profiles of 5000 and 10 rows describe different rows"):
        profile.with_columns(outputs)
