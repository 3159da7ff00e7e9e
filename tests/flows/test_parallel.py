"""score-batch on Dask: a real LocalCluster gives exactly the sequential outputs, failures stay per file."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scoring.layout import FLOW_RUN_ID
from scoring.scorer import SCORED_AT

# Differ by construction between two runs: when and in which run a row was scored.
RUN_COLUMNS = {SCORED_AT, FLOW_RUN_ID}


@pytest.fixture
def partitions(make_registry, challenger_bundle, tmp_path, incoming_rows, write_parquet, monkeypatch):
    registry = make_registry()
    registry.promote(registry.register(challenger_bundle), "challenger")
    monkeypatch.setenv("SCOREPIPE_REGISTRY", str(registry.root))
    for d, day in enumerate(("2026-11-24", "2026-11-25")):
        for i in range(3):
            frame = incoming_rows(300, seed=10 * d + i)
            if i == 1:
                frame.loc[7, "amount"] = -5.0  # one row rejected per day
            write_parquet(tmp_path / "incoming" / f"date={day}" / f"part-{i}.parquet", frame)
    (tmp_path / "incoming" / "date=2026-11-25" / "part-9.parquet").write_bytes(b"not parquet")
    return tmp_path / "incoming"


def outputs(root: Path) -> dict[str, object]:
    """Every output under ``root`` (results, rejects, shadow) without the per-run columns."""
    tables = {}
    for path in sorted(root.rglob("*.parquet")):
        if "_quarantine" in path.parts:
            continue  # copies of inputs that are not Parquet: compared by name below
        table = pq.read_table(path)
        tables[path.relative_to(root).as_posix()] = table.drop_columns(
            [c for c in table.column_names if c in RUN_COLUMNS]
        ).replace_schema_metadata(None)
    return tables


def same_outputs(a: Path, b: Path) -> None:
    left, right = outputs(a), outputs(b)
    assert sorted(left) == sorted(right)
    for name in left:
        assert left[name].equals(right[name]), name
    quarantined = sorted(p.relative_to(a).as_posix() for p in (a / "_quarantine").rglob("*"))
    assert quarantined == sorted(p.relative_to(b).as_posix() for p in (b / "_quarantine").rglob("*"))


def file_statuses(summary: dict) -> dict[str, str]:
    return {Path(f["source"]).name + "@" + Path(f["source"]).parent.name: f["status"] for f in summary["files"]}


@pytest.mark.integration
def test_flow_run_on_a_local_cluster_writes_exactly_the_sequential_outputs(prefect_server, partitions, tmp_path):
    from flows.score_batch import score_batch

    common = {"input": str(partitions), "chunk_size": 128, "shadow": "challenger"}
    sequential = score_batch(output=str(tmp_path / "one"), workers=1, **common)
    parallel = score_batch(output=str(tmp_path / "dask"), workers=2, **common)
    same_outputs(tmp_path / "one", tmp_path / "dask")  # the challenger's _shadow/ outputs included
    assert len(list((tmp_path / "dask" / "_shadow").rglob("*.parquet"))) == 6
    assert parallel["shadow_agreement"] == sequential["shadow_agreement"]
    for key in ("rows_scored", "rows_rejected", "files_scored", "files_quarantined", "files_failed"):
        assert parallel[key] == sequential[key], key
    assert (parallel["rows_scored"], parallel["rows_rejected"], parallel["files_quarantined"]) == (1798, 2, 1)
    assert file_statuses(parallel) == file_statuses(sequential)

    again = score_batch(input=str(partitions), output=str(tmp_path / "dask"), workers=2)
    assert (again["files_skipped"], again["rows_scored"]) == (6, 0)  # idempotent on Dask too


@pytest.mark.integration
def test_a_file_failing_on_a_worker_is_reported_and_the_others_are_scored(prefect_server, partitions, tmp_path):
    from flows.score_batch import score_batch

    out = tmp_path / "scored"
    blocked = out / "date=2026-11-24" / "part-2.parquet"
    blocked.mkdir(parents=True)  # a folder where the result must go: its rename fails on every try
    state = score_batch(input=str(partitions), output=str(out), workers=2, return_state=True)
    assert state.is_failed()
    assert "1 of 7 input files failed" in state.message
    assert "part-2.parquet" in state.message and "SinkError" in state.message
    assert (out / "date=2026-11-24" / "part-0.parquet").is_file()
    assert (out / "date=2026-11-25" / "part-2.parquet").is_file()


@pytest.mark.integration
def test_without_a_server_on_an_existing_cluster_gives_the_same_outputs(partitions, tmp_path, monkeypatch):
    """`scorepipe score --dask-address`: a plain Dask client, no Prefect API."""
    from distributed import LocalCluster

    from batch.runners import DaskOptions
    from flows.score_batch import score_batch

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing listens: any API call would fail
    score_batch.fn(input=str(partitions), output=str(tmp_path / "one"), workers=1)
    with LocalCluster(**DaskOptions(workers=2).cluster_kwargs()) as cluster:
        summary = score_batch.fn(
            input=str(partitions), output=str(tmp_path / "dask"), dask_address=cluster.scheduler_address
        )
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    assert summary["rows_scored"] == 1798 and summary["run_id"].startswith("local-")
    same_outputs(tmp_path / "one", tmp_path / "dask")


def test_a_worker_scores_on_one_blas_and_openmp_thread(make_registry, partitions, tmp_path, monkeypatch):
    import threadpoolctl

    import batch.runners as parallel
    from scoring.sources import discover_inputs

    registry = make_registry()
    seen = []
    real = parallel.score_file

    def spy(*args, **kwargs):
        seen.extend(pool["num_threads"] for pool in threadpoolctl.threadpool_info())
        return real(*args, **kwargs)

    monkeypatch.setattr(parallel, "score_file", spy)
    inputs = discover_inputs(partitions)
    job = parallel.BatchJob(str(tmp_path / "out"), 100, "run", registry=str(registry.root), model_version=1)
    result = parallel.score_file_on_worker(str(inputs.files[0]), inputs, job)
    assert result.status == "scored" and result.scored == 300
    assert seen and set(seen) == {1}


def test_workers_must_not_be_negative(partitions, tmp_path):
    from flows.score_batch import score_batch
    from scoring import ScoringError

    with pytest.raises(ScoringError, match="workers must be 0"):
        score_batch.fn(input=str(partitions), output=str(tmp_path / "out"), workers=-1)


@pytest.mark.integration
def test_a_worker_killed_mid_file_loses_nothing(make_registry, tmp_path, incoming_rows, write_parquet, monkeypatch):
    """SIGKILL one Dask worker while it writes: its file is scored again elsewhere, whole, exactly once."""
    import os
    import signal
    import threading
    import time

    from distributed import Client, LocalCluster

    from batch.runners import DaskOptions
    from flows.score_batch import score_batch

    monkeypatch.setenv("SCOREPIPE_REGISTRY", str(make_registry().root))
    source = tmp_path / "incoming" / "date=2026-11-27"
    for i in range(6):
        write_parquet(source / f"part-{i}.parquet", incoming_rows(40_000, seed=70 + i))
    score_batch.fn(input=str(source.parent), output=str(tmp_path / "one"), chunk_size=2_000, workers=1)
    out = tmp_path / "dask"
    killed: list[int] = []
    with LocalCluster(**DaskOptions(workers=2).cluster_kwargs()) as cluster, Client(cluster) as client:
        pids = list(client.run(os.getpid).values())

        def kill_a_writer() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                if any(p.name.endswith(".tmp") for p in out.rglob(".*")):  # a worker is mid-write
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                time.sleep(0.02)

        killer = threading.Thread(target=kill_a_writer)
        killer.start()
        summary = score_batch.fn(
            input=str(source.parent), output=str(out), chunk_size=2_000, dask_address=cluster.scheduler_address
        )
        killer.join()
    assert killed, "no worker was caught writing"
    assert [f["status"] for f in summary["files"]] == ["scored"] * 6
    assert summary["rows_scored"] == 240_000
    same_outputs(tmp_path / "one", out)  # every output whole, once; a killed write leaves only a hidden .tmp
