"""Reports across nights in an Evidently workspace, read back through Evidently's own UI and its API."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime

import httpx
import pandas as pd
import pytest

from batch.run import run_batch
from devservers.evidently import EvidentlyUI
from drift.report import build_report
from performance.report import build_performance_report
from reports.workspace import ReportWorkspace, night_of
from scorepipe.settings import Settings
from scoring import Scorer, synthetic

pytestmark = pytest.mark.integration

NIGHTS = {"2026-11-26": False, "2026-11-27": False, "2026-11-28": True}  # night -> drifted
# scorepipe's share of drifted features over every feature (Evidently renders only some of them)
SHARE = {"metric": "evidently:metric_v2:MeanValue", "metric_labels": {"column": "share_drifted_features"}}


def series(ui, project, *filters):
    body = {"series_filter": [{"tags": [], "metadata": {}, **f} for f in filters]}
    response = httpx.post(f"{ui.url}/api/v2/snapshots/{project}/data_series_batch", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def mean_value(column):
    return {"metric": "evidently:metric_v2:MeanValue", "metric_labels": {"column": column}}


def screenshot(url, path, profile):
    """Headless Chromium's picture of ``url`` after its scripts ran (the dashboard draws its plots client-side)."""
    chromium = shutil.which("chromium") or pytest.fail("chromium not installed (make tools installs it)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1400,2600", "--virtual-time-budget=20000",
             "--force-prefers-reduced-motion",  # the plots are drawn whole, not caught mid-animation
             "--hide-scrollbars", f"--screenshot={path}"]  # fmt: skip
    result = subprocess.run([chromium, *flags, url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and path.exists(), result.stderr


def test_three_nights_are_a_trend_on_the_dashboard(make_registry, write_parquet, tmp_path):
    registry = make_registry()
    settings = Settings(home=tmp_path / "home", registry=registry.root)
    for night, drifted in NIGHTS.items():
        rows = synthetic.generate(3000, seed=int(night[-2:]), drifted=drifted)
        write_parquet(tmp_path / "in" / f"date={night}" / "part-0.parquet", rows.drop(columns=[synthetic.TARGET]))
        run_batch(tmp_path / "in", tmp_path / "out", Scorer.from_registry(registry), chunk_size=4096)
        summary = build_report(tmp_path / "out" / f"date={night}", tmp_path / "reports", settings)
        assert summary.drift_detected == drifted and summary.workspace_project
    labels = rows[[synthetic.ID_COLUMN, synthetic.TARGET]].rename(columns={synthetic.TARGET: "label"})
    write_parquet(tmp_path / "labels" / "labels.parquet", labels)
    performance = build_performance_report(
        tmp_path / "out" / "date=2026-11-28", tmp_path / "labels", tmp_path / "reports", settings
    )
    assert performance.workspace_project == summary.workspace_project  # one project for the model

    ui = EvidentlyUI(settings.workspace_dir, log_path=tmp_path / "ui.log").start()
    try:
        projects = httpx.get(f"{ui.url}/api/projects", timeout=30).json()
        assert [p["name"] for p in projects] == ["scorepipe"]
        project = projects[0]["id"]
        trend = series(ui, project, SHARE)
        dates = [datetime.fromisoformat(s["timestamp"]).date().isoformat() for s in trend["sources"]]
        assert dates == list(NIGHTS)  # each run on its night, not on the day the report ran
        [shares] = trend["series"]
        assert shares["values"][0] < 0.3 and shares["values"][1] < 0.3 and shares["values"][2] >= 0.3
        assert all("batch" in s["tags"] and s["metadata"]["model_version"] == "1" for s in trend["sources"])

        auc = series(ui, project, mean_value("roc_auc"), mean_value("estimated_roc_auc"), mean_value("label_coverage"))
        by_filter = {s["filter_index"]: s["values"] for s in auc["series"]}
        realized, estimated, coverage = (by_filter[i][-1] for i in range(3))
        assert realized == pytest.approx(performance.versions[0].roc_auc)
        assert estimated == pytest.approx(performance.estimated["roc_auc"]) and coverage == pytest.approx(1.0)

        picture = tmp_path / "dashboard.png"
        screenshot(f"{ui.url}/projects/{project}", picture, tmp_path / "chromium")
        assert picture.stat().st_size > 60_000  # a blank or error page is a few kilobytes
        shutil.copy(picture, settings.home / "dashboard.png")
    finally:
        ui.stop()
    assert night_of("s3://b/scored/date=2026-11-28/part-0.parquet").date().isoformat() == "2026-11-28"


def test_a_report_over_several_partitions_adds_one_run_per_night(make_registry, write_parquet, tmp_path):
    """A backfill: one report over three nights judges them together, and plots them as three points."""
    registry = make_registry()
    labels = []
    for night, drifted in NIGHTS.items():
        rows = synthetic.generate(1500, seed=int(night[-2:]), drifted=drifted)
        write_parquet(tmp_path / "in" / f"date={night}" / "part-0.parquet", rows.drop(columns=[synthetic.TARGET]))
        kept = rows.iloc[: 500 * (1 + list(NIGHTS).index(night))]  # a third, two thirds, all of the labels
        labels.append(kept[[synthetic.ID_COLUMN, synthetic.TARGET]].rename(columns={synthetic.TARGET: "label"}))
    run_batch(tmp_path / "in", tmp_path / "out", Scorer.from_registry(registry), chunk_size=4096)
    settings = Settings(home=tmp_path / "home", registry=registry.root)
    summary = build_report(tmp_path / "out", tmp_path / "reports", settings)
    assert summary.current_rows == 4500
    workspace = ReportWorkspace(settings.workspace_dir).workspace
    runs = [workspace.get_run(summary.workspace_project, r) for r in workspace.list_runs(summary.workspace_project)]
    shares = {
        r.timestamp.date().isoformat(): m.share.value
        for r in runs
        for m in r.metric_results.values()
        if m.display_name == "Count of Drifted Columns"
    }
    assert sorted(shares) == list(NIGHTS)  # each night on its own date
    assert [shares[n] >= settings.drift_share for n in NIGHTS] == list(NIGHTS.values())

    write_parquet(tmp_path / "labels" / "labels.parquet", pd.concat(labels, ignore_index=True))
    performance = build_performance_report(tmp_path / "out", tmp_path / "labels", tmp_path / "reports", settings)
    assert performance.labelled_rows == 3000
    runs = [workspace.get_run(summary.workspace_project, r) for r in workspace.list_runs(summary.workspace_project)]
    coverage = {
        r.timestamp.date().isoformat(): m.value
        for r in runs
        for m in r.metric_results.values()
        if m.display_name.startswith("Mean value") and "label_coverage" in m.display_name
    }
    assert coverage == {n: pytest.approx(share) for n, share in zip(NIGHTS, (1 / 3, 2 / 3, 1.0), strict=True)}


def test_an_s3_workspace_holds_the_runs_and_the_ui_serves_them(make_registry, write_parquet, tmp_path, s3_bucket):
    registry = make_registry()
    night = tmp_path / "in" / "date=2026-11-28"
    write_parquet(night / "part-0.parquet", synthetic.generate(1500, seed=28, drifted=True, with_target=False))
    run_batch(tmp_path / "in", tmp_path / "out", Scorer.from_registry(registry), chunk_size=4096)
    settings = Settings(home=tmp_path / "home", registry=registry.root, evidently_workspace=f"{s3_bucket}/evidently")
    summary = build_report(tmp_path / "out" / "date=2026-11-28", tmp_path / "reports", settings)
    assert summary.workspace_project and not (tmp_path / "home" / "evidently").exists()
    ui = EvidentlyUI(settings.workspace_dir, log_path=tmp_path / "ui.log").start()  # reads it from S3 as well
    try:
        projects = httpx.get(f"{ui.url}/api/projects", timeout=30).json()
        assert [(p["name"], p["id"]) for p in projects] == [("scorepipe", summary.workspace_project)]
        [shares] = series(ui, summary.workspace_project, SHARE)["series"]
        assert shares["values"] == [pytest.approx(summary.share_drifted_features, abs=1e-4)]
    finally:
        ui.stop()
