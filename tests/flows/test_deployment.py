"""The user's path: a real Prefect server, prefect.yaml deployed, a process worker, `prefect deployment run`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from devservers.prefect import PrefectServer, prefect_worker, run_prefect

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_deployment_runs_through_a_worker(tmp_path, make_registry, incoming_rows, write_parquet):
    registry = make_registry()
    source = tmp_path / "incoming" / "date=2026-11-24"
    write_parquet(source / "part-0.parquet", incoming_rows(400, seed=1))
    (source / "part-1.parquet").write_bytes(b"not parquet")
    out = tmp_path / "scored"
    base_env = {**os.environ, "SCOREPIPE_REGISTRY": str(registry.root), "SCOREPIPE_HOME": str(tmp_path / "home")}

    server = PrefectServer(tmp_path / "prefect", base_env=base_env)
    worker = None
    try:
        server.start()
        env = server.client_env(base_env)
        run_prefect(["work-pool", "create", "scorepipe-process", "--type", "process", "--overwrite"], env=env, cwd=REPO)
        deployed = run_prefect(["--no-prompt", "deploy", "--all"], env=env, cwd=REPO)
        assert "score-batch/nightly" in deployed
        assert "drift-report/nightly" in deployed and "performance-report/nightly" in deployed
        schedules = run_prefect(["deployment", "inspect", "score-batch/nightly"], env=env, cwd=REPO)
        assert "15 2 * * *" in schedules
        worker = prefect_worker(server, "scorepipe-process", cwd=REPO, base_env=base_env).start()
        output = run_prefect(
            [
                "deployment",
                "run",
                "score-batch/nightly",
                "-p",
                f"input={source.parent}",
                "-p",
                f"output={out}",
                "--watch",
                "--watch-timeout",
                "240",
            ],
            env=env,
            cwd=REPO,
            timeout=300,
        )
        assert "Completed" in output, output
        assert "scoring files on a LocalCluster of" in worker.log_tail(400)  # the deployment runs on Dask
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
    assert worker.process.returncode is not None and server.process.returncode is not None
    scored = pd.read_parquet(out / "date=2026-11-24" / "part-0.parquet")
    assert len(scored) == 400 and set(scored["model_version"]) == {1}
    run_ids = set(scored["flow_run_id"])
    assert len(run_ids) == 1 and not next(iter(run_ids)).startswith("local-")
    error = json.loads((out / "_quarantine" / "date=2026-11-24" / "part-1.parquet.error.json").read_text())
    assert "ArrowInvalid" in error["error"]
