"""The score-batch flow under a real (test-harness) Prefect server: states, retries, artifacts."""

from __future__ import annotations

import pytest


@pytest.fixture
def batch_env(prefect_server, make_registry, tmp_path, incoming_rows, write_parquet, monkeypatch):
    registry = make_registry()
    monkeypatch.setenv("SCOREPIPE_REGISTRY", str(registry.root))
    folder = tmp_path / "incoming" / "date=2026-11-24"
    for i in range(3):
        frame = incoming_rows(200, seed=i)
        if i == 0:
            frame.loc[3, "amount"] = -2.0
        write_parquet(folder / f"part-{i}.parquet", frame)
    (folder / "part-3.parquet").write_bytes(b"garbage")
    return tmp_path / "incoming", tmp_path / "scored"


@pytest.mark.integration
def test_flow_scores_partitions_and_publishes_a_summary_artifact(batch_env):
    from prefect.artifacts import Artifact

    from flows.score_batch import score_batch

    source, out = batch_env
    state = score_batch(input=str(source), output=str(out), chunk_size=64, return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert (summary["rows_scored"], summary["rows_rejected"]) == (599, 1)
    assert (summary["files_scored"], summary["files_quarantined"]) == (3, 1)
    assert (out / "date=2026-11-24" / "part-2.parquet").exists()
    artifact = Artifact.get("score-batch-summary")
    assert artifact is not None and "| 599 | 1 | 3 | 0 | 1 | 0 |" in artifact.data
    files = Artifact.get("score-batch-files")
    assert files is not None and "part-3.parquet" in str(files.data) and "quarantined" in str(files.data)

    rerun = score_batch(input=str(source), output=str(out), return_state=True).result()
    assert (rerun["files_skipped"], rerun["rows_scored"]) == (3, 0)


@pytest.mark.integration
def test_transient_failure_is_retried_and_persistent_failure_fails_the_run(batch_env, monkeypatch):
    import flows.score_batch as module
    from batch.engine import score_file

    source, out = batch_env
    attempts: dict[str, int] = {}

    def sometimes_failing(source, *args, **kwargs):
        path = source
        attempts[path.name] = attempts.get(path.name, 0) + 1
        if path.name == "part-1.parquet" and attempts[path.name] == 1:
            raise OSError("transient: network file system hiccup")
        if path.name == "part-2.parquet":
            raise OSError("disk is gone")
        return score_file(path, *args, **kwargs)

    retrying = module.score_file_task.with_options(retry_delay_seconds=0)
    monkeypatch.setattr(module, "score_file_task", retrying)
    monkeypatch.setattr(retrying, "fn", sometimes_failing)
    state = module.score_batch(input=str(source), output=str(out), return_state=True)
    assert state.is_failed()
    assert attempts["part-1.parquet"] == 2 and attempts["part-2.parquet"] == 3  # 1 try + 2 retries
    assert "1 of 4 input files failed" in state.message
    assert "part-2.parquet: OSError: disk is gone" in state.message
    assert (out / "date=2026-11-24" / "part-1.parquet").exists()
    assert (out / "date=2026-11-24" / "part-0.parquet").exists()
    assert not (out / "date=2026-11-24" / "part-2.parquet").exists()


def test_flow_function_runs_without_a_server(make_registry, tmp_path, incoming_rows, write_parquet, monkeypatch):
    """`scorepipe score` calls the flow's function directly: no Prefect API is needed or started."""
    from flows.score_batch import score_batch

    monkeypatch.setenv("SCOREPIPE_REGISTRY", str(make_registry().root))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing listens: any API call would fail
    write_parquet(tmp_path / "in" / "a.parquet", incoming_rows(50))
    summary = score_batch.fn(input=str(tmp_path / "in"), output=str(tmp_path / "out"))
    assert summary["rows_scored"] == 50 and summary["run_id"].startswith("local-")
