"""One big file on many workers: cut into row ranges, scored apart, joined into exactly the sequential output."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.engine import score_file
from batch.pieces import Piece, plan, score_piece, stitch
from batch.results import FileResult
from batch.runners import BatchJob, DaskOptions, DaskRunner
from scoring.layout import PARTS_DIR, REJECTED_DIR
from scoring.sources import discover_inputs
from tests.flows.test_parallel import same_outputs


def write(path: Path, frame, row_group_rows: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_rows)
    return path


@pytest.fixture
def big_file(tmp_path, incoming_rows):
    frame = incoming_rows(3_000, seed=31)
    frame.loc[[5, 1_700, 2_999], "amount"] = -1.0  # rejected rows in the first and the last part
    return write(tmp_path / "incoming" / "date=2026-12-07" / "night.parquet", frame, row_group_rows=500)


def test_a_file_is_cut_along_row_groups_into_a_range_per_worker(big_file, tmp_path):
    inputs = discover_inputs(big_file.parent.parent)
    common = {"output": str(tmp_path / "out"), "model_version": 1, "force": False}
    pieces = plan(inputs, workers=2, min_rows=1_500, **common)
    assert [(p.start, p.stop, p.part, p.parts) for p in pieces] == [(0, 1_500, 0, 2), (1_500, 3_000, 1, 2)]
    three = plan(inputs, workers=2, min_rows=1_000, **common)  # two per worker, no more than the rows allow
    assert [(p.start, p.stop) for p in three] == [(0, 1_000), (1_000, 2_000), (2_000, 3_000)]
    assert plan(inputs, workers=1, min_rows=1_000, **common) == [Piece(str(inputs.files[0]))]
    assert plan(inputs, workers=2, min_rows=2_000, **common) == [Piece(str(inputs.files[0]))]


def test_a_file_of_one_row_group_is_cut_by_rows(tmp_path, incoming_rows):
    one_group = write(tmp_path / "in" / "one.parquet", incoming_rows(2_001, seed=4), row_group_rows=10_000)
    pieces = plan(discover_inputs(one_group), output=str(tmp_path / "o"), model_version=1, workers=2,
                  min_rows=500, force=False)  # fmt: skip
    assert [(p.start, p.stop) for p in pieces] == [(0, 500), (500, 1_000), (1_000, 1_500), (1_500, 2_001)]


def test_unreadable_or_current_files_are_left_whole(big_file, tmp_path, scorer):
    broken = tmp_path / "incoming" / "date=2026-12-07" / "broken.parquet"
    broken.write_bytes(b"not parquet")
    inputs = discover_inputs(big_file.parent.parent)
    out = tmp_path / "out"
    score_file(big_file, inputs, out, scorer, chunk_size=400, run_id="earlier")
    pieces = plan(inputs, output=str(out), model_version=scorer.version, workers=2, min_rows=100, force=False)
    assert [p.whole for p in pieces] == [True, True]  # broken: score_file quarantines it; night: already current
    forced = plan(inputs, output=str(out), model_version=scorer.version, workers=2, min_rows=100, force=True)
    assert [p.parts for p in forced] == [1, 4, 4, 4, 4]


def test_parts_joined_in_order_are_the_sequential_output(big_file, tmp_path, scorer):
    inputs = discover_inputs(big_file.parent.parent)
    score_file(big_file, inputs, tmp_path / "one", scorer, chunk_size=400, run_id="run")
    pieces = plan(inputs, output=str(tmp_path / "cut"), model_version=1, workers=2, min_rows=1_000, force=False)
    assert len(pieces) == 3
    results = [score_piece(p, inputs, str(tmp_path / "cut"), scorer, chunk_size=400, run_id="run") for p in pieces]
    assert [r.rows for r in results] == [1_000, 1_000, 1_000]
    joined = stitch(pieces, results, inputs, str(tmp_path / "cut"), "run")
    assert (joined.status, joined.rows, joined.scored, joined.rejected) == ("scored", 3_000, 2_997, 3)
    same_outputs(tmp_path / "one", tmp_path / "cut")  # rows, source_row, rejects: all as one process writes them
    assert pq.read_table(tmp_path / "cut" / REJECTED_DIR / "date=2026-12-07" / "night.parquet").num_rows == 3
    assert not (tmp_path / "cut" / PARTS_DIR).exists() or not any((tmp_path / "cut" / PARTS_DIR).rglob("*.arrow"))


def test_a_part_that_cannot_decode_its_rows_quarantines_the_file(big_file, tmp_path, scorer):
    inputs = discover_inputs(big_file.parent.parent)
    pieces = plan(inputs, output=str(tmp_path / "cut"), model_version=1, workers=2, min_rows=1_500, force=False)
    metadata = pq.ParquetFile(big_file).metadata
    column = metadata.row_group(4).column(0)  # in the second part's rows
    data = bytearray(big_file.read_bytes())
    start = column.data_page_offset
    data[start : start + 64] = b"\xff" * 64
    big_file.write_bytes(bytes(data))
    results = [score_piece(p, inputs, str(tmp_path / "cut"), scorer, chunk_size=400, run_id="run") for p in pieces]
    assert [r.status for r in results] == ["scored", "quarantined"]
    joined = stitch(pieces, results, inputs, str(tmp_path / "cut"), "run")
    assert joined.status == "quarantined" and joined.error
    assert not (tmp_path / "cut" / "date=2026-12-07" / "night.parquet").exists()  # no output from half a file
    assert (tmp_path / "cut" / "_quarantine" / "date=2026-12-07" / "night.parquet").is_file()


@pytest.mark.integration
def test_one_file_on_two_dask_workers_is_written_whole_and_once(big_file, tmp_path, make_registry):
    from distributed import Client, LocalCluster

    from batch.run import run_batch
    from scoring import Scorer

    registry = make_registry()
    scorer = Scorer.from_registry(registry)
    inputs_root = big_file.parent.parent
    run_batch(inputs_root, tmp_path / "one", scorer, chunk_size=400)
    with LocalCluster(**DaskOptions(workers=2).cluster_kwargs()) as cluster, Client(cluster):
        runner = DaskRunner(DaskOptions(workers=2, address=cluster.scheduler_address))
        job = BatchJob(str(tmp_path / "dask"), 400, "run-1", registry=str(registry.root), model_version=1,
                       split_rows=1_000)  # fmt: skip
        assert len(runner.plan(discover_inputs(inputs_root), job)) == 3  # the premise: the file is cut in three
        run = {"chunk_size": 400, "runner": runner, "registry": str(registry.root), "split_rows": 1_000}
        summary = run_batch(inputs_root, tmp_path / "dask", scorer, **run)
        assert [(f.status, f.rows, f.rejected) for f in summary.files] == [("scored", 3_000, 3)]
        same_outputs(tmp_path / "one", tmp_path / "dask")
        assert not any((tmp_path / "dask" / PARTS_DIR).rglob("*.arrow"))
        again = run_batch(inputs_root, tmp_path / "dask", scorer, **run)
    assert [f.status for f in again.files] == ["skipped"]  # idempotent: the joined output carries the fingerprint


@pytest.mark.integration
def test_the_flow_cuts_a_big_file_into_task_runs_and_joins_it(prefect_server, big_file, make_registry, tmp_path,
                                                              monkeypatch):  # fmt: skip
    import batch.runners
    from flows.score_batch import score_batch

    joined = []

    class Counting(batch.runners.Joiner):
        def add(self, piece, result):
            done = super().add(piece, result)
            if done is not None:
                joined.append(piece.parts)
            return done

    monkeypatch.setattr(batch.runners, "Joiner", Counting)
    monkeypatch.setenv("SCOREPIPE_REGISTRY", str(make_registry().root))
    monkeypatch.setenv("SCOREPIPE_BATCH_SPLIT_ROWS", "1000")
    inputs_root = str(big_file.parent.parent)
    score_batch(input=inputs_root, output=str(tmp_path / "one"), chunk_size=400, workers=1)
    summary = score_batch(input=inputs_root, output=str(tmp_path / "dask"), chunk_size=400, workers=2)
    assert (summary["rows_scored"], summary["rows_rejected"], summary["files_scored"]) == (2_997, 3, 1)
    assert joined == [3]  # the file went to the workers as three task runs, joined here
    same_outputs(tmp_path / "one", tmp_path / "dask")
    assert not any((tmp_path / "dask" / PARTS_DIR).rglob("*.arrow"))


def test_a_cut_inside_one_row_group_gives_the_sequential_output(tmp_path, incoming_rows, scorer):
    frame = incoming_rows(2_001, seed=6)
    frame.loc[[3, 1_500], "amount"] = -2.0
    one_group = write(tmp_path / "in" / "one.parquet", frame, row_group_rows=10_000)
    inputs = discover_inputs(one_group)
    score_file(one_group, inputs, tmp_path / "one", scorer, chunk_size=300, run_id="run")
    pieces = plan(inputs, output=str(tmp_path / "cut"), model_version=1, workers=2, min_rows=500, force=False)
    assert len(pieces) == 4  # ranges that do not line up with the 300-row chunks
    results = [score_piece(p, inputs, str(tmp_path / "cut"), scorer, chunk_size=300, run_id="run") for p in pieces]
    assert stitch(pieces, results, inputs, str(tmp_path / "cut"), "run").rejected == 2
    same_outputs(tmp_path / "one", tmp_path / "cut")


def test_a_failed_part_fails_its_file_leaves_no_output_and_no_parts(big_file, tmp_path, scorer):
    inputs = discover_inputs(big_file.parent.parent)
    out = tmp_path / "cut"
    (out / REJECTED_DIR / "date=2026-12-07").mkdir(parents=True)
    stale = out / REJECTED_DIR / "date=2026-12-07" / "night.parquet"
    stale.write_bytes(b"from an earlier run")
    pieces = plan(inputs, output=str(out), model_version=1, workers=2, min_rows=1_000, force=False)
    results = [score_piece(p, inputs, str(out), scorer, chunk_size=400, run_id="run") for p in pieces]
    results[1] = FileResult(results[1].source, "failed", error="SinkError: the worker's disk is full")
    joined = stitch(pieces, results, inputs, str(out), "run")
    assert joined.status == "failed" and "disk is full" in joined.error
    assert not (out / "date=2026-12-07" / "night.parquet").exists()
    assert stale.read_bytes() == b"from an earlier run"  # untouched: nothing of this run was committed
    assert not any((out / PARTS_DIR).rglob("*.arrow"))


def test_a_part_that_cannot_be_written_is_a_sink_error_not_a_quarantine(big_file, tmp_path, scorer, monkeypatch):
    import batch.pieces
    from scoring import SinkError

    inputs = discover_inputs(big_file.parent.parent)
    pieces = plan(inputs, output=str(tmp_path / "cut"), model_version=1, workers=2, min_rows=1_000, force=False)

    def full_disk(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(batch.pieces._IpcPart, "_write", full_disk)
    with pytest.raises(SinkError, match="No space left"):  # Dask retries it; after that the file is "failed"
        score_piece(pieces[0], inputs, str(tmp_path / "cut"), scorer, chunk_size=400, run_id="run")
    assert not (tmp_path / "cut" / "_quarantine").exists()
