"""Batch and registry on S3, against a real S3 API server (S3Proxy) started by the project."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest

from scoring import IntegrityError, Registry, RegistryError
from scoring.bundle import MODEL_FILE
from scoring.layout import FLOW_RUN_ID, SOURCE_FILE
from scoring.registry import LOCK_FILE, _s3_lock
from scoring.scorer import SCORED_AT
from scoring.storage import Location

pytestmark = pytest.mark.integration


def upload(local: Path, target: Location) -> None:
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        (target / path.relative_to(local).as_posix()).write_bytes(path.read_bytes())


def table(location: Location):
    frame = pq.read_table(location.path, filesystem=location.fs)
    differ = {SCORED_AT, FLOW_RUN_ID, SOURCE_FILE}  # when, in which run and from where
    return frame.drop_columns([c for c in frame.column_names if c in differ]).replace_schema_metadata(None)


@pytest.fixture
def incoming(tmp_path, incoming_rows, write_parquet):
    folder = tmp_path / "incoming"
    for i in range(3):
        frame = incoming_rows(250, seed=40 + i)
        if i == 2:
            frame.loc[11, "amount"] = -1.0
        write_parquet(folder / "date=2026-11-27" / f"part-{i}.parquet", frame)
    (folder / "date=2026-11-27" / "part-3.parquet").write_bytes(b"this is not parquet")
    return folder


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "dask"])
def test_batch_from_s3_to_s3_with_the_registry_on_s3(
    s3_bucket, make_registry, bundle, incoming, tmp_path, monkeypatch, workers
):
    from flows.score_batch import score_batch

    registry = Registry(f"{s3_bucket}/registry")
    registry.promote(registry.register(bundle, note="on s3"), "champion")
    upload(incoming, Location(f"{s3_bucket}/incoming"))
    monkeypatch.setenv("SCOREPIPE_REGISTRY", f"{s3_bucket}/registry")
    source, out = f"{s3_bucket}/incoming", f"{s3_bucket}/scored"

    summary = score_batch.fn(input=source, output=out, chunk_size=100, workers=workers)
    assert (summary["rows_scored"], summary["rows_rejected"]) == (749, 1)
    assert (summary["files_scored"], summary["files_quarantined"], summary["files_failed"]) == (3, 1, 0)

    scored = Location(out)
    names = {f.relative_to(scored).as_posix() for f in scored.files()}
    assert names == {
        "date=2026-11-27/part-0.parquet",
        "date=2026-11-27/part-1.parquet",
        "date=2026-11-27/part-2.parquet",
        "_rejected/date=2026-11-27/part-2.parquet",
        "_quarantine/date=2026-11-27/part-3.parquet",
        "_quarantine/date=2026-11-27/part-3.parquet.error.json",
    }  # and no temporary object left behind
    error = json.loads((scored / "_quarantine/date=2026-11-27/part-3.parquet.error.json").read_bytes())
    assert "ArrowInvalid" in error["error"] and error["source"].startswith("s3://")

    # The same inputs scored locally give the same rows: S3 changes where, not what.
    monkeypatch.setenv("SCOREPIPE_REGISTRY", str(make_registry().root))  # the same bundle as version 1
    score_batch.fn(input=str(incoming), output=str(tmp_path / "local"), chunk_size=100)
    for name in ("date=2026-11-27/part-0.parquet", "_rejected/date=2026-11-27/part-2.parquet"):
        local = Location(tmp_path / "local" / name)
        assert table(scored / name).equals(table(local)), name

    monkeypatch.setenv("SCOREPIPE_REGISTRY", f"{s3_bucket}/registry")
    again = score_batch.fn(input=source, output=out, workers=workers)
    assert (again["files_skipped"], again["rows_scored"]) == (3, 0)  # idempotent on S3: nothing rewritten


def test_registry_round_trip_on_s3(s3_bucket, bundle, challenger_bundle):
    registry = Registry(f"{s3_bucket}/models")
    first = registry.register(bundle, note="first")
    second = registry.register(challenger_bundle, note="second")
    assert (first, second) == (1, 2)
    assert registry.promote(1) is None and registry.promote(2) == 1
    assert registry.aliases() == {"champion": 2}
    loaded = Registry(f"{s3_bucket}/models").load("champion")  # a new reader: everything comes from S3
    assert loaded.version == 2 and loaded.bundle.classes == challenger_bundle.classes
    assert registry.rollback() == 1 and registry.resolve("champion") == 1
    assert [v.note for v in registry.versions()] == ["first", "second"]
    assert not Location(f"{s3_bucket}/models/{LOCK_FILE}").exists()  # released after every write
    stamp = registry.index_stamp()
    registry.promote(2, "challenger")
    assert registry.index_stamp() != stamp
    plan = registry.start_canary("v2", weight=10)  # a canary plan and its audit log, on S3 as well
    registry.update_canary(lambda p: p.with_changes(weight=20), decision={"action": "raised"})
    registry.promote_canary("by hand", decision={"action": "promoted"})
    assert [d["action"] for d in Registry(f"{s3_bucket}/models").canary_log(plan)] == ["raised", "promoted"]


def test_a_tampered_object_on_s3_is_refused_before_unpickling(s3_bucket, bundle, monkeypatch):
    registry = Registry(f"{s3_bucket}/models")
    registry.promote(registry.register(bundle), "champion")
    model = Location(f"{s3_bucket}/models/versions/000001/{MODEL_FILE}")
    boto3.client("s3").put_object(Bucket=model.bucket, Key=model.key, Body=model.read_bytes() + b"tampered")
    unpickled = []
    monkeypatch.setattr("scoring.bundle.joblib.load", lambda *a, **k: unpickled.append(a))
    with pytest.raises(IntegrityError, match=f"refusing to load s3://.*{MODEL_FILE}.*sha256"):
        registry.load("champion")
    assert unpickled == []


def test_concurrent_writers_on_s3_never_lose_an_update(s3_bucket, bundle):
    """Writers in parallel threads: the conditional-write lock gives each its own version number."""
    root = f"{s3_bucket}/models"
    numbers: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            numbers.append(Registry(root).register(bundle))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sorted(numbers) == [1, 2, 3, 4]
    assert [v.version for v in Registry(root).versions()] == [1, 2, 3, 4]


def test_a_held_lock_blocks_and_a_stale_one_is_taken_over(s3_bucket, bundle):
    lock = Location(f"{s3_bucket}/models/{LOCK_FILE}")
    lock.write_bytes(json.dumps({"owner": "another writer", "since": time.time()}).encode())
    with pytest.raises(RegistryError, match="held by another writer"), _s3_lock(lock, wait=0.5):
        pass
    lock.write_bytes(json.dumps({"owner": "a writer that died", "since": time.time() - 3600}).encode())
    registry = Registry(f"{s3_bucket}/models")
    assert registry.register(bundle) == 1
    assert not lock.exists()


def test_reports_read_scored_data_and_labels_from_s3_and_write_there(s3_bucket, make_registry, tmp_path):
    """Local inputs scored to S3, then the drift and performance reports of that S3 data, saved on S3."""
    import pandas as pd

    from batch.run import run_batch
    from drift.report import build_report
    from performance.report import build_performance_report
    from scorepipe.settings import Settings
    from scoring import Scorer, synthetic

    registry = make_registry()
    truth = synthetic.generate(3_000, seed=5)
    local = tmp_path / "in" / "date=2026-11-27"
    local.mkdir(parents=True)
    truth.drop(columns=[synthetic.TARGET]).to_parquet(local / "part-0.parquet", index=False)
    scored = f"{s3_bucket}/scored"
    run_batch(tmp_path / "in", scored, Scorer.from_registry(registry), chunk_size=1000)
    labels = Location(f"{s3_bucket}/labels/date=2026-11-27/labels.parquet")
    labels.write_bytes(
        truth[[synthetic.ID_COLUMN, synthetic.TARGET]].rename(columns={synthetic.TARGET: "label"}).to_parquet()
    )
    settings = Settings(home=tmp_path / "home", registry=registry.root, drift_sample_rows=2_000)

    drift = build_report(f"{scored}/date=2026-11-27", f"{s3_bucket}/reports", settings)
    assert drift.current_rows_total == 3_000 and drift.html.startswith(f"{s3_bucket}/reports/")
    html = Location(drift.html).read_bytes()
    assert b"<html" in html.lower()[:2000] and len(html) > 100_000
    assert json.loads(Location(drift.json_path).read_bytes())["verdict"] == drift.verdict

    quality = build_performance_report(
        f"{scored}/date=2026-11-27", f"{s3_bucket}/labels", f"{s3_bucket}/reports", settings
    )
    assert quality.labelled_rows == 3_000 and quality.json_path.startswith("s3://")
    written = json.loads(Location(quality.json_path).read_bytes())
    assert written["labelled_rows"] == 3_000 and pd.notna(written["versions"][0]["roc_auc"])
    assert Location(quality.html).is_file()


@pytest.mark.integration
def test_the_nightly_report_flows_run_on_s3_inputs_and_outputs(
    s3_bucket, make_registry, tmp_path, monkeypatch, prefect_server
):
    """drift-report and performance-report as flow runs: the newest date= partition found under an s3:// prefix."""
    from batch.run import run_batch
    from flows.drift_report import drift_report
    from flows.performance_report import performance_report
    from scoring import Scorer, synthetic

    registry = make_registry()
    scored = f"{s3_bucket}/scored"
    for day, seed, drifted in (("2026-11-26", 5, False), ("2026-11-27", 6, True)):  # the newest night drifted
        truth = synthetic.generate(2_000, seed=seed, drifted=drifted)
        local = tmp_path / "in" / f"date={day}"
        local.mkdir(parents=True)
        truth.drop(columns=[synthetic.TARGET]).to_parquet(local / "part-0.parquet", index=False)
        labels = truth[[synthetic.ID_COLUMN, synthetic.TARGET]].rename(columns={synthetic.TARGET: "label"})
        Location(f"{s3_bucket}/labels/date={day}/labels.parquet").write_bytes(labels.to_parquet())
    run_batch(tmp_path / "in", scored, Scorer.from_registry(registry), chunk_size=1000)
    monkeypatch.setenv("SCOREPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCOREPIPE_REGISTRY", str(registry.root))
    monkeypatch.setenv("SCOREPIPE_DRIFT_SAMPLE_ROWS", "2000")

    drift = drift_report(current=scored, output=f"{s3_bucket}/reports", return_state=True)
    assert drift.is_failed() and drift.name == "Drift detected", drift.message
    reports = [f.name for f in Location(f"{s3_bucket}/reports").files()]
    assert "drift-date=2026-11-27.html" in reports and not any("2026-11-26" in name for name in reports)

    quality = performance_report(scored=scored, labels=f"{s3_bucket}/labels", output=f"{s3_bucket}/reports",
                                 return_state=True)  # fmt: skip
    assert quality.is_final(), quality.message
    written = [f for f in Location(f"{s3_bucket}/reports").files() if f.name.startswith("performance-")]
    assert {f.name for f in written} >= {"performance-date=2026-11-27.html", "performance-date=2026-11-27.json"}
    body = json.loads(Location(f"{s3_bucket}/reports/performance-date=2026-11-27.json").read_bytes())
    assert body["labelled_rows"] == 2_000

    missing = drift_report(current=f"{s3_bucket}/nothing-here", return_state=True)
    assert missing.is_failed() and f"no scored data at {s3_bucket}/nothing-here" in missing.message


@pytest.mark.integration
def test_every_path_argument_of_the_cli_takes_s3(s3_bucket, tmp_path, monkeypatch, capsys):
    """data, train, models register and score with every file and folder on S3 (no `s3:/` folding)."""
    import io

    import joblib

    from scorepipe.cli import main
    from scoring import Registry, synthetic

    monkeypatch.setenv("SCOREPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCOREPIPE_REGISTRY", f"{s3_bucket}/registry")
    train = f"{s3_bucket}/train/train.parquet"
    assert main(["data", "generate", "--out", train, "--rows", "4000"]) == 0
    assert main(["train", "--data", train, "--target", synthetic.TARGET]) == 0
    registry = Registry(f"{s3_bucket}/registry")
    assert registry.resolve("champion") == 1
    model = registry.load("champion").bundle.pipeline
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    Location(f"{s3_bucket}/models/mine.joblib").write_bytes(buffer.getvalue())
    code = main(["models", "register", f"{s3_bucket}/models/mine.joblib", "--reference", train,
                 "--target", synthetic.TARGET, "--alias", "challenger"])  # fmt: skip
    assert code == 0 and registry.resolve("challenger") == 2
    assert main(["data", "incoming", "--out", f"{s3_bucket}/incoming", "--rows", "500", "--files", "2"]) == 0
    assert main(["score", f"{s3_bucket}/incoming", f"{s3_bucket}/scored", "--shadow", "challenger"]) == 0
    scored = [f for f in Location(f"{s3_bucket}/scored").files() if f.name.endswith(".parquet")]
    assert len(scored) == 4  # two champion outputs and the challenger's two under _shadow/
    labels = f"{s3_bucket}/labels/l.parquet"
    assert main(["data", "labels", "--out", labels, "--rows", "1000", "--seed", "7"]) == 0
    assert Location(labels).is_file()
    capsys.readouterr()


def test_cli_starts_a_local_s3_server_scores_into_it_and_stops_it(tmp_path, monkeypatch, make_registry, capsys):
    """`scorepipe s3 up --bucket` prints the AWS variables; with them, `scorepipe score` writes to S3."""
    from scorepipe.cli import main

    monkeypatch.setenv("SCOREPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SCOREPIPE_REGISTRY", str(make_registry().root))
    try:
        assert main(["s3", "up", "--bucket", "lake"]) == 0
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in capsys.readouterr().out.splitlines()
            if line.startswith("export ")
        )
        assert exports["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        for name, value in exports.items():
            monkeypatch.setenv(name, value)
        assert main(["s3", "status"]) == 0
        assert main(["data", "incoming", "--out", str(tmp_path / "in"), "--rows", "2000", "--files", "2"]) == 0
        assert main(["score", str(tmp_path / "in"), "s3://lake/scored"]) == 0
        assert len([f for f in Location("s3://lake/scored").files() if not f.name.startswith(".")]) == 2
    finally:
        main(["s3", "down"])
    assert main(["s3", "status"]) == 1
    assert (tmp_path / "home" / "s3" / "data" / "lake").is_dir()  # the objects stay on disk
