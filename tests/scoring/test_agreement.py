from __future__ import annotations

import numpy as np
import pandas as pd

from scoring import Scorer
from scoring.agreement import Agreement


def test_agreement_of_two_models_on_the_same_rows(bundle, incoming_rows):
    rows = incoming_rows(2000)
    rows.loc[3, "amount"] = -5.0  # rejected by both: not compared
    champion = Scorer(bundle, 1).score(rows)
    other = champion.copy()
    other["proba_1"] = np.clip(champion["proba_1"] + 0.3, 0, 1)
    other["proba_0"] = 1 - other["proba_1"]
    other["prediction"] = (other["proba_1"] > 0.5).astype("Int64").where(other["reject_reason"].isna())
    agreement = Agreement(1, 2)
    diff = agreement.add(champion, other, bundle.classes)
    valid = champion["reject_reason"].isna()
    expected = (other["proba_1"] - champion["proba_1"]).abs()[valid]
    assert agreement.rows == len(diff) == int(valid.sum()) == 1999
    assert np.isclose(agreement.mean_abs_diff, expected.mean())
    assert abs(agreement.quantile(0.95) - np.quantile(expected, 0.95)) <= 0.001 + 1e-9
    agreed = (champion["prediction"][valid] == other["prediction"][valid]).sum()
    assert agreement.label_agreement == agreed / 1999 < 1


def test_identical_models_agree_fully_and_merge_round_trips(bundle, incoming_rows):
    scored = Scorer(bundle, 1).score(incoming_rows(500))
    a = Agreement(1, 1)
    a.add(scored, scored, bundle.classes)
    assert a.summary()["label_agreement"] == 1.0 and a.mean_abs_diff == 0.0 and a.quantile(0.95) == 0.001
    b = Agreement.from_dict(a.to_dict())
    b.merge(a)
    assert b.rows == 1000 and b.agreed == 1000 and (b.histogram == 2 * a.histogram).all()


def test_empty_agreement_has_no_figures():
    summary = Agreement(1, 2).summary()
    assert summary["rows_compared"] == 0 and summary["label_agreement"] is None
    assert summary["p95_abs_proba_diff"] is None
    assert isinstance(pd.Series([1]).iloc[0], np.integer)
