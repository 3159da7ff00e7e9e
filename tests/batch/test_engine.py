"""Batch scoring over real Parquet files on disk (no Prefect: the same functions the flow runs)."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from batch.engine import score_file
from batch.run import run_batch
from batch.runners import SequentialRunner
from scoring import Scorer, SourceError
from scoring.sources import discover_inputs
from scoring.storage import Location


@pytest.fixture
def partition(tmp_path, incoming_rows, write_parquet):
    """Three files in a date partition; file 1 has three bad rows."""
    folder = tmp_path / "incoming" / "date=2026-11-24"
    frames = [incoming_rows(300, seed=s) for s in (1, 2, 3)]
    frames[1].loc[5, "amount"] = -1.0
    frames[1].loc[17, "channel"] = "teleport"
    frames[1].loc[42, "hour_of_day"] = float("inf")
    for i, frame in enumerate(frames):
        write_parquet(folder / f"part-{i}.parquet", frame)
    return folder, frames


def read(path):
    return pd.read_parquet(path)


def test_scores_every_file_with_lineage_and_mirrors_partitions(partition, scorer, tmp_path):
    folder, frames = partition
    out = tmp_path / "scored"
    summary = run_batch(folder, out, scorer, chunk_size=128, run_id="run-1")
    assert [f.status for f in summary.files] == ["scored"] * 3
    assert (summary.rows_scored, summary.rows_rejected) == (897, 3)
    result = read(out / "date=2026-11-24" / "part-0.parquet")
    assert len(result) == 300
    assert result["source_row"].tolist() == list(range(300))
    assert set(result["source_file"]) == {str(folder / "part-0.parquet")}
    assert set(result["flow_run_id"]) == {"run-1"} and set(result["model_version"]) == {1}
    assert result["transaction_id"].tolist() == frames[0]["transaction_id"].tolist()
    expected = scorer.score(frames[0])
    pd.testing.assert_series_equal(result["proba_1"], expected["proba_1"].reset_index(drop=True))


def test_rejected_rows_are_quarantined_with_reasons_and_original_values(partition, scorer, tmp_path):
    folder, _ = partition
    out = tmp_path / "scored"
    run_batch(folder, out, scorer, chunk_size=10)
    rejects = read(out / "_rejected" / "date=2026-11-24" / "part-1.parquet").set_index("source_row")
    assert sorted(rejects.index) == [5, 17, 42]
    assert rejects.loc[5, "reject_reason"] == "amount: -1.0 is below the minimum 0.0"
    assert (
        rejects.loc[17, "channel"] == "teleport" and "unknown category 'teleport'" in rejects.loc[17, "reject_reason"]
    )
    assert rejects.loc[42, "hour_of_day"] == "inf"
    scored = read(out / "date=2026-11-24" / "part-1.parquet")
    assert len(scored) == 297 and not set(scored["source_row"]) & {5, 17, 42}
    assert not (out / "_rejected" / "date=2026-11-24" / "part-0.parquet").exists()


def test_rerun_skips_current_outputs_and_force_replaces_without_duplicates(partition, scorer, tmp_path):
    folder, _ = partition
    out = tmp_path / "scored"
    run_batch(folder, out, scorer, chunk_size=100)
    target = out / "date=2026-11-24" / "part-2.parquet"
    first = target.read_bytes()
    again = run_batch(folder, out, scorer, chunk_size=100)
    assert [f.status for f in again.files] == ["skipped"] * 3
    assert target.read_bytes() == first
    forced = run_batch(folder, out, scorer, chunk_size=100, force=True)
    assert [f.status for f in forced.files] == ["scored"] * 3
    assert len(read(target)) == 300
    assert sorted(p.name for p in target.parent.iterdir()) == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]


def test_changed_input_or_new_model_version_is_rescored(
    partition, scorer, bundle, tmp_path, incoming_rows, write_parquet
):
    folder, _ = partition
    out = tmp_path / "scored"
    run_batch(folder, out, scorer, chunk_size=100)
    write_parquet(folder / "part-0.parquet", incoming_rows(50, seed=77))
    statuses = [f.status for f in run_batch(folder, out, scorer, chunk_size=100).files]
    assert statuses == ["scored", "skipped", "skipped"]
    assert len(read(out / "date=2026-11-24" / "part-0.parquet")) == 50
    newer = Scorer(bundle, version=2)
    assert [f.status for f in run_batch(folder, out, newer, chunk_size=100).files] == ["scored"] * 3


def test_corrupt_file_is_quarantined_and_the_others_scored(partition, scorer, tmp_path):
    folder, _ = partition
    (folder / "part-3.parquet").write_bytes(b"PAR1 not really parquet")
    out = tmp_path / "scored"
    summary = run_batch(folder, out, scorer, chunk_size=100)
    statuses = {f.source.rsplit("/", 1)[1]: f.status for f in summary.files}
    assert statuses == {
        "part-0.parquet": "scored",
        "part-1.parquet": "scored",
        "part-2.parquet": "scored",
        "part-3.parquet": "quarantined",
    }
    quarantined = out / "_quarantine" / "date=2026-11-24" / "part-3.parquet"
    assert quarantined.read_bytes() == b"PAR1 not really parquet"
    error = json.loads(quarantined.with_name("part-3.parquet.error.json").read_text())
    assert "ArrowInvalid" in error["error"] and error["source"] == str(folder / "part-3.parquet")
    assert not (out / "date=2026-11-24" / "part-3.parquet").exists()


def test_file_missing_a_feature_is_quarantined_naming_the_column(
    partition, scorer, tmp_path, incoming_rows, write_parquet
):
    folder, _ = partition
    write_parquet(folder / "part-9.parquet", incoming_rows(20).drop(columns=["amount", "channel"]))
    summary = run_batch(folder, tmp_path / "scored", scorer, chunk_size=100)
    bad = summary.files[-1]
    assert bad.status == "quarantined"
    assert "column 'amount' is missing" in bad.error and "column 'channel' is missing" in bad.error


def test_a_crash_mid_file_leaves_no_partial_output_and_keeps_the_old_one(partition, scorer, tmp_path, monkeypatch):
    folder, _ = partition
    out = tmp_path / "scored"
    run_batch(folder, out, scorer, chunk_size=100)
    target = out / "date=2026-11-24" / "part-0.parquet"
    before = target.read_bytes()
    calls = {"n": 0}
    real_score = Scorer.score

    def dying_score(self, frame, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError("simulated crash in the middle of a file")
        return real_score(self, frame, **kwargs)

    monkeypatch.setattr(Scorer, "score", dying_score)
    inputs = discover_inputs(folder)
    with pytest.raises(MemoryError):
        score_file(folder / "part-0.parquet", inputs, out, scorer, chunk_size=100, run_id="r", force=True)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []


def test_chunks_bound_the_frames_scored(partition, scorer, tmp_path, monkeypatch):
    folder, _ = partition
    sizes = []
    real_score = Scorer.score
    monkeypatch.setattr(Scorer, "score", lambda self, f, **k: sizes.append(len(f)) or real_score(self, f, **k))
    run_batch(folder / "part-0.parquet", tmp_path / "scored", scorer, chunk_size=64)
    assert sizes == [64, 64, 64, 64, 44]


def test_failing_file_is_reported_and_does_not_stop_the_others(partition, scorer, tmp_path):
    folder, _ = partition

    def flaky(source, *args, **kwargs):
        if source.name == "part-1.parquet":
            raise SourceError(f"cannot read input {source}: connection reset")
        return score_file(source, *args, **kwargs)

    runner = SequentialRunner(scorer, score_one=flaky)
    summary = run_batch(folder, tmp_path / "scored", scorer, chunk_size=100, runner=runner)
    assert [f.status for f in summary.files] == ["scored", "failed", "scored"]
    assert "connection reset" in summary.files[1].error


def test_inputs_by_file_glob_and_folder(partition, tmp_path):
    folder, _ = partition
    assert discover_inputs(folder / "part-1.parquet").files == [Location(folder / "part-1.parquet")]
    by_glob = discover_inputs(str(tmp_path / "incoming" / "*" / "part-[01].parquet"))
    assert [p.name for p in by_glob.files] == ["part-0.parquet", "part-1.parquet"]
    assert by_glob.relative(by_glob.files[0]).as_posix() == "date=2026-11-24/part-0.parquet"
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-5.parquet.tmp").write_text("")
    assert len(discover_inputs(tmp_path / "incoming").files) == 3
    with pytest.raises(SourceError, match="neither a file, a folder nor a glob"):
        discover_inputs(tmp_path / "nowhere")
    with pytest.raises(SourceError, match="holds no .parquet files"):
        discover_inputs(tmp_path / "scored_empty_dir" if (tmp_path / "scored_empty_dir").mkdir() is None else "")


def test_empty_input_file_gets_an_empty_output(tmp_path, incoming_rows, write_parquet, scorer):
    source = write_parquet(tmp_path / "in" / "empty.parquet", incoming_rows(10).iloc[0:0])
    summary = run_batch(source, tmp_path / "out", scorer, chunk_size=100)
    assert summary.files[0].status == "scored"
    table = pq.read_table(tmp_path / "out" / "empty.parquet")
    assert table.num_rows == 0 and "proba_1" in table.schema.names


def test_rescoring_a_scored_file_replaces_old_scores_and_lineage(partition, scorer, bundle, tmp_path):
    folder, _ = partition
    first = tmp_path / "first"
    run_batch(folder / "part-0.parquet", first, scorer, chunk_size=100, run_id="one")
    again = run_batch(
        first / "date=2026-11-24" / "part-0.parquet",
        tmp_path / "second",
        Scorer(bundle, 2),
        chunk_size=100,
        run_id="two",
    )
    assert again.files[0].status == "scored"
    result = read(tmp_path / "second" / "date=2026-11-24" / "part-0.parquet")
    assert list(result.columns).count("prediction") == 1 and list(result.columns).count("flow_run_id") == 1
    assert set(result["model_version"]) == {2} and set(result["flow_run_id"]) == {"two"}
    assert set(result["source_file"]) == {str(first / "date=2026-11-24" / "part-0.parquet")}


def test_integer_and_text_feature_columns_are_written_as_the_schema_types(
    tmp_path, incoming_rows, write_parquet, scorer
):
    frame = incoming_rows(30)
    frame["txn_count_24h"] = frame["txn_count_24h"].astype("int64")
    frame["amount"] = frame["amount"].astype(str)
    source = write_parquet(tmp_path / "in" / "typed.parquet", frame)
    run_batch(source, tmp_path / "out", scorer, chunk_size=7)
    table = pq.read_table(tmp_path / "out" / "typed.parquet")
    assert str(table.schema.field("txn_count_24h").type) == "double"
    assert str(table.schema.field("amount").type) == "double"
    assert table.column("amount").to_pylist() == [float(v) for v in frame["amount"]]


def test_a_failed_write_is_a_sink_error_not_a_quarantined_input(partition, scorer, tmp_path, monkeypatch):
    import errno

    from scoring import SinkError

    folder, _ = partition

    def disk_full(self, table, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", disk_full)
    out = tmp_path / "scored"
    with pytest.raises(SinkError, match="cannot write .*part-0.parquet.*No space left"):
        score_file(folder / "part-0.parquet", discover_inputs(folder), out, scorer, chunk_size=100, run_id="r")
    assert not (out / "_quarantine").exists()
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))


def test_near_unique_columns_are_written_without_a_dictionary_and_read_back_the_same(partition, scorer, tmp_path):
    """Probabilities and ids skip the Parquet dictionary (chosen on the first rows); categories keep it."""
    import pyarrow as pa

    from batch.sinks import repeating_columns

    folder, frames = partition
    out = tmp_path / "out"
    run_batch(folder, out, scorer, chunk_size=50)
    written = out / "date=2026-11-24" / "part-0.parquet"
    metadata = pq.ParquetFile(written).metadata
    encodings = {
        metadata.row_group(0).column(j).path_in_schema: set(metadata.row_group(0).column(j).encodings)
        for j in range(metadata.num_columns)
    }
    assert "PLAIN_DICTIONARY" not in encodings["proba_1"] and "RLE_DICTIONARY" not in encodings["proba_1"]
    assert {"PLAIN_DICTIONARY", "RLE_DICTIONARY"} & encodings["channel"]
    assert pq.read_table(written).column("proba_1").to_pylist() == scorer.score(frames[0])["proba_1"].tolist()

    sample = pa.table({"id": [str(i) for i in range(100)], "kind": ["a", "b"] * 50, "none": pa.nulls(100)})
    assert repeating_columns(sample) == ["kind", "none"]
