"""Delayed labels joined to scored rows: exact counts, scikit-learn's figures, verdicts, set-aside labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, log_loss, precision_score, recall_score, roc_auc_score

from batch.run import run_batch
from performance.join import join_labels
from performance.labels import read_labels
from performance.report import build_performance_report
from reports.html import EXTERNAL_ASSET
from scorepipe.cli import main
from scorepipe.settings import Settings
from scoring import Registry, Scorer, synthetic
from scoring.training import train_bundle


@pytest.fixture(scope="module")
def fitted_on_40k():
    """A model whose holdout is large enough (8,000 rows) for its training ROC AUC to be a fair yardstick."""
    return train_bundle(
        synthetic.generate(40_000, seed=21),
        synthetic.TARGET,
        features=list(synthetic.FEATURES),
        bounds=synthetic.BOUNDS,
        reference_rows=500,
        seed=21,
    )


@pytest.fixture
def scored_night(fitted_on_40k, tmp_path, write_parquet):
    """Factory: a scored partition of generated rows (clean or drifted) and their true labels."""
    registry = Registry(tmp_path / "registry")
    registry.promote(registry.register(fitted_on_40k), "champion")

    def make(rows=20_000, *, seed=7, drifted=False, name="night"):
        truth = synthetic.generate(rows, seed=seed, drifted=drifted)
        write_parquet(
            tmp_path / name / "in" / "date=2026-11-27" / "part-0.parquet", truth.drop(columns=[synthetic.TARGET])
        )
        run_batch(tmp_path / name / "in", tmp_path / name / "out", Scorer.from_registry(registry), chunk_size=8192)
        labels = truth[[synthetic.ID_COLUMN, synthetic.TARGET]].rename(columns={synthetic.TARGET: "label"})
        return tmp_path / name / "out" / "date=2026-11-27", labels

    settings = Settings(home=tmp_path / "home", registry=registry.root)
    return make, settings, registry


def write_labels(path, frame):
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def test_bad_label_rows_are_set_aside_with_reasons(tmp_path):
    labels = pd.DataFrame(
        {
            "transaction_id": ["a", "b", None, "c", "d", "d", "e", "e", "f"],
            "label": [0, 1, 1, None, 2, 0, 1, 0, 1.0],
        }
    )
    repeated = pd.concat([labels, labels.iloc[[0]]], ignore_index=True)  # "a" twice, same label
    path = write_labels(tmp_path / "labels.parquet", repeated)
    found = read_labels(path, id_column="transaction_id", label_column="label", classes=[np.int64(0), np.int64(1)])
    assert sorted(found.labels["id"]) == ["a", "b", "d", "f"] and found.repeats_dropped == 1
    assert dict(zip(found.labels["id"], found.labels["label"], strict=True)) == {"a": 0, "b": 1, "d": 0, "f": 1}
    reasons = dict(zip(found.rejected["transaction_id"].astype(str), found.rejected["reason"], strict=True))
    assert reasons["None"] == "missing transaction_id"
    assert reasons["c"] == "missing label"
    assert reasons["d"] == "label 2.0 is not one of the model's classes [0, 1]"
    assert reasons["e"] == "conflicting labels for the same id: [0, 1]"
    assert len(found.rejected) == 5 and found.rows_read == 10


def test_half_the_labels_give_half_coverage_and_scikit_learns_figures(scored_night, tmp_path):
    make, settings, _ = scored_night
    scored, truth = make(8_000)
    half = truth.iloc[::2]
    strangers = pd.DataFrame({"transaction_id": ["nobody-1", "nobody-2"], "label": [0, 1]})
    labels = write_labels(tmp_path / "labels" / "l.parquet", pd.concat([half, strangers]))
    summary = build_performance_report(scored, labels, tmp_path / "reports", settings)
    assert summary.scored_rows == 8_000 and summary.labelled_rows == 4_000
    assert summary.label_coverage == 0.5
    assert summary.unknown_label_ids == 2 and set(summary.unknown_label_examples) == {"nobody-1", "nobody-2"}
    [v1] = summary.versions
    out = pd.read_parquet(scored).merge(half, on="transaction_id")
    assert v1.rows == len(out) == 4_000
    assert v1.roc_auc == pytest.approx(roc_auc_score(out["label"], out["proba_1"]))
    assert v1.precision == pytest.approx(precision_score(out["label"], out["prediction"], zero_division=0))
    assert v1.recall == pytest.approx(recall_score(out["label"], out["prediction"]))
    assert v1.f1 == pytest.approx(f1_score(out["label"], out["prediction"]))
    assert v1.log_loss == pytest.approx(log_loss(out["label"], out[["proba_0", "proba_1"]].to_numpy()))
    assert sum(map(sum, v1.confusion_matrix)) == 4_000
    html = Path(summary.html).read_text()
    assert "<html" in html.lower() and not EXTERNAL_ASSET.search(html)
    assert f"<title>Performance of model v1 on {scored}, against the labels in " in html
    assert "labelled rows of v1: 4,000" in html and "scored rows read: 8,000" in html
    assert json.loads(Path(summary.json_path).read_text())["labelled_rows"] == 4_000


def test_clean_data_is_not_degraded_and_drifted_data_is(scored_night, tmp_path):
    make, settings, registry = scored_night
    training = registry.info(1).metrics["roc_auc"]
    clean, clean_truth = make(30_000, seed=7, name="clean")
    drifted, drifted_truth = make(30_000, seed=8, drifted=True, name="drifted")
    ok = build_performance_report(clean, write_labels(tmp_path / "c.parquet", clean_truth), tmp_path / "r", settings)
    bad = build_performance_report(
        drifted, write_labels(tmp_path / "d.parquet", drifted_truth), tmp_path / "r", settings, name="drifted"
    )
    assert ok.verdict == "ok", ok.versions[0].reasons
    assert bad.verdict == "degraded" and "below training's" in bad.versions[0].reasons[0]
    assert bad.versions[0].roc_auc < training - settings.performance_max_auc_drop < ok.versions[0].roc_auc


def test_a_live_window_joins_on_event_id_and_counts_a_repeat_once(make_registry, tmp_path, incoming_rows):
    registry = make_registry()
    rows = incoming_rows(500)
    scored = Scorer.from_registry(registry).score(rows.drop(columns=[synthetic.ID_COLUMN]))
    window = scored.drop(columns=["reject_reason"]).assign(event_id=rows[synthetic.ID_COLUMN])
    folder = tmp_path / "live" / "date=2026-11-27"
    folder.mkdir(parents=True)
    window.to_parquet(folder / "live-1.parquet", index=False)
    window.iloc[:50].to_parquet(folder / "live-2.parquet", index=False)  # redelivered after a crash
    labels = write_labels(tmp_path / "labels.parquet", pd.DataFrame({"event_id": window["event_id"], "label": 0}))
    found = read_labels(labels, id_column="event_id", label_column="label", classes=[0, 1])
    joined = join_labels(tmp_path / "live", found)
    assert joined.id_column == "event_id" and len(joined.rows) == 500
    assert joined.scored_rows == 550 and joined.scored_repeats_dropped == 50


def test_cli_exits_4_when_degraded(scored_night, tmp_path, monkeypatch, capsys):
    make, settings, registry = scored_night
    drifted, truth = make(30_000, seed=8, drifted=True)
    labels = write_labels(tmp_path / "labels.parquet", truth)
    monkeypatch.setenv("SCOREPIPE_REGISTRY", str(registry.root))
    monkeypatch.setenv("SCOREPIPE_HOME", str(tmp_path / "home"))
    code = main(["performance", "--scored", str(drifted), "--labels", str(labels), "--out", str(tmp_path / "r")])
    assert code == 4 and "DEGRADED" in capsys.readouterr().out
    assert main(["performance", "--scored", str(drifted), "--labels", str(tmp_path / "none.parquet")]) == 1


@pytest.mark.integration
def test_the_flow_state_follows_the_verdict(scored_night, tmp_path, monkeypatch, prefect_server):
    from prefect.artifacts import Artifact

    from flows.performance_report import performance_report

    make, settings, registry = scored_night
    monkeypatch.setenv("SCOREPIPE_REGISTRY", str(registry.root))
    monkeypatch.setenv("SCOREPIPE_HOME", str(tmp_path / "home"))
    clean, clean_truth = make(20_000, seed=7, name="clean")
    drifted, drifted_truth = make(20_000, seed=8, drifted=True, name="drifted")
    ok = performance_report(
        scored=str(clean.parent),
        labels=str(write_labels(tmp_path / "lc" / "l.parquet", clean_truth)),
        return_state=True,
    )
    assert ok.is_completed() and ok.name == "Completed"
    bad = performance_report(
        scored=str(drifted.parent),
        labels=str(write_labels(tmp_path / "ld" / "l.parquet", drifted_truth)),
        output=str(tmp_path / "reports"),
        return_state=True,
    )
    assert bad.is_failed() and bad.name == "Performance degraded"
    artifact = Artifact.get("performance-report")
    assert artifact is not None and "**degraded**" in artifact.data

    from prefect.settings import PREFECT_API_URL
    from rich.console import Console

    from scorepipe.status import flow_runs_table

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    console = Console(width=200, record=True)
    console.print(flow_runs_table())
    rows = [line for line in console.export_text().splitlines() if "performance-report" in line]
    assert rows and "Performance degraded" in rows[0], "scorepipe status lists the last performance-report run"


def test_estimated_performance_matches_the_realized_on_calibrated_probabilities():
    from performance.estimate import estimated_metrics

    rng = np.random.default_rng(3)
    p = rng.beta(0.6, 4, 100_000)
    y = rng.random(len(p)) < p  # labels drawn from the probabilities: calibrated by construction
    estimate = estimated_metrics(p)
    assert estimate["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=0.005)
    assert estimate["precision"] == pytest.approx(precision_score(y, p >= 0.5), abs=0.01)
    assert estimate["recall"] == pytest.approx(recall_score(y, p >= 0.5), abs=0.01)


def test_a_shadow_challenger_is_judged_on_the_same_labelled_rows(
    fitted_on_40k, challenger_bundle, tmp_path, write_parquet
):
    registry = Registry(tmp_path / "registry")
    registry.promote(registry.register(fitted_on_40k), "champion")
    registry.promote(registry.register(challenger_bundle), "challenger")
    truth = synthetic.generate(20_000, seed=7)
    write_parquet(tmp_path / "in" / "date=2026-11-27" / "p.parquet", truth.drop(columns=[synthetic.TARGET]))
    run_batch(
        tmp_path / "in",
        tmp_path / "out",
        Scorer.from_registry(registry),
        chunk_size=8192,
        shadow=Scorer.from_registry(registry, "challenger"),
    )
    labels = write_labels(tmp_path / "labels.parquet", truth[["transaction_id", "is_fraud"]].iloc[::2])
    settings = Settings(home=tmp_path / "home", registry=registry.root)
    summary = build_performance_report(
        tmp_path / "out" / "date=2026-11-27", labels, tmp_path / "r", settings, label_column="is_fraud"
    )
    c = summary.challenger
    assert c is not None and (c["champion_version"], c["challenger_version"]) == (1, 2) and c["rows"] == 10_000
    champion = pd.read_parquet(tmp_path / "out" / "date=2026-11-27" / "p.parquet").merge(truth, on="transaction_id")
    champion = champion[champion["transaction_id"].isin(truth["transaction_id"].iloc[::2])]
    assert c["champion_roc_auc"] == pytest.approx(roc_auc_score(champion["is_fraud"], champion["proba_1"]))
    assert c["ci95_low"] <= c["difference"] <= c["ci95_high"] and c["resamples"] >= 190
    assert c["significant"] == (c["ci95_low"] > 0 or c["ci95_high"] < 0)
    assert summary.estimated is not None and summary.estimated["rows"] == 20_000
