"""Shadow scoring on the batch path: the champion's files are untouched, the challenger's sit beside them."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from batch.run import run_batch
from scoring import Scorer
from scoring.compare import compare_outputs

FIXED = pd.Timestamp("2026-11-27T02:15:00Z")


def fixed(bundle, version):
    return Scorer(bundle, version, clock=lambda: FIXED)


@pytest.fixture
def partition(tmp_path, incoming_rows, write_parquet):
    folder = tmp_path / "incoming" / "date=2026-11-27"
    for i in range(2):
        frame = incoming_rows(400, seed=30 + i)
        frame.loc[7, "amount"] = -3.0
        write_parquet(folder / f"part-{i}.parquet", frame)
    return folder


def test_champion_outputs_are_byte_for_byte_the_same_with_a_shadow(partition, bundle, challenger_bundle, tmp_path):
    alone, beside = tmp_path / "alone", tmp_path / "beside"
    run_batch(partition, alone, fixed(bundle, 1), chunk_size=150, run_id="r")
    summary = run_batch(
        partition, beside, fixed(bundle, 1), chunk_size=150, run_id="r", shadow=fixed(challenger_bundle, 2)
    )
    for name in ("part-0.parquet", "part-1.parquet"):
        assert (alone / "date=2026-11-27" / name).read_bytes() == (beside / "date=2026-11-27" / name).read_bytes()
        assert (alone / "_rejected" / "date=2026-11-27" / name).read_bytes() == (
            beside / "_rejected" / "date=2026-11-27" / name
        ).read_bytes()
        shadow = pd.read_parquet(beside / "_shadow" / "date=2026-11-27" / name)
        champion = pd.read_parquet(beside / "date=2026-11-27" / name)
        assert shadow["source_row"].tolist() == champion["source_row"].tolist()  # every scored row mirrored
        assert set(shadow["model_version"]) == {2}
        expected = Scorer(challenger_bundle, 2).score(pd.read_parquet(partition / name))
        expected = expected[expected["reject_reason"].isna()].reset_index(drop=True)
        pd.testing.assert_series_equal(shadow["proba_1"], expected["proba_1"])
    result = summary.to_dict()
    assert result["shadow_version"] == 2 and result["shadow_agreement"]["rows_compared"] == 798
    assert all(f.shadow_output and f.shadow_error is None for f in summary.files)

    [pair] = compare_outputs(beside / "date=2026-11-27")
    assert pair.summary() == pytest.approx(result["shadow_agreement"], rel=1e-12)  # sums in another order


def test_a_challenger_that_raises_is_reported_and_the_champion_written(partition, bundle, challenger_bundle, tmp_path):
    challenger = fixed(copy.deepcopy(challenger_bundle), 2)  # the session's bundle stays whole

    def broken(*_):
        raise RuntimeError("challenger exploded")

    challenger._predict_proba = broken  # the model call, on every path (sklearn or the shortcut)
    out = tmp_path / "out"
    summary = run_batch(partition, out, fixed(bundle, 1), chunk_size=150, shadow=challenger)
    assert [f.status for f in summary.files] == ["scored", "scored"]
    assert summary.rows_scored == 798
    assert all("challenger exploded" in f.shadow_error and f.shadow_output is None for f in summary.files)
    assert not (out / "_shadow").exists() or not list((out / "_shadow").rglob("*.parquet"))
    assert not list(out.rglob("*.tmp"))
    assert summary.to_dict()["shadow_agreement"] is None


def test_a_rerun_with_a_shadow_scores_files_whose_shadow_is_missing(partition, bundle, challenger_bundle, tmp_path):
    out = tmp_path / "out"
    run_batch(partition, out, Scorer(bundle, 1), chunk_size=500)
    again = run_batch(partition, out, Scorer(bundle, 1), chunk_size=500)
    assert [f.status for f in again.files] == ["skipped", "skipped"]
    shadowed = run_batch(partition, out, Scorer(bundle, 1), chunk_size=500, shadow=Scorer(challenger_bundle, 2))
    assert [f.status for f in shadowed.files] == ["scored", "scored"]
    last = run_batch(partition, out, Scorer(bundle, 1), chunk_size=500, shadow=Scorer(challenger_bundle, 2))
    assert [f.status for f in last.files] == ["skipped", "skipped"]
