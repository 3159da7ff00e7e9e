"""Evidently drift reports on real scored Parquet, through the library, the flow and the CLI."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from batch.run import run_batch
from drift.current import sample_current
from drift.report import build_report
from drift.summary import DriftSummary
from reports.html import EXTERNAL_ASSET, ReportError
from scorepipe.settings import Settings
from scoring import Registry, Scorer, SourceError, synthetic
from scoring.training import train_bundle


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A model with a production-sized reference, and a clean and a drifted scored batch from the generator."""
    root = tmp_path_factory.mktemp("drift")
    frame = synthetic.generate(20_000, seed=12)
    bundle = train_bundle(frame, synthetic.TARGET, features=list(synthetic.FEATURES), reference_rows=4000, seed=12)
    registry = Registry(root / "registry")
    registry.promote(registry.register(bundle), "champion")
    scorer = Scorer.from_registry(registry)
    for name, drifted in (("clean", False), ("drifted", True)):
        folder = root / "incoming" / name / "date=2026-11-24"
        folder.mkdir(parents=True)
        synthetic.generate(6000, seed=77, drifted=drifted, with_target=False).to_parquet(folder / "part-0.parquet")
        run_batch(folder.parent, root / "scored" / name, scorer, chunk_size=2500)
    settings = Settings(home=root / "home", registry=registry.root, drift_sample_rows=5000)
    return root, settings


@pytest.fixture(scope="module")
def reports(scored):
    root, settings = scored
    return {
        name: build_report(root / "scored" / name, root / "reports", settings, name=name)
        for name in ("clean", "drifted")
    }


def test_drift_is_detected_on_injected_drift_and_not_on_clean_data(reports):
    clean, drifted = reports["clean"], reports["drifted"]
    assert clean.verdict == "no_drift" and clean.drifted_features == [] and not clean.prediction_drift
    assert drifted.verdict == "drift" and drifted.dataset_drift and drifted.prediction_drift
    assert {"amount", "channel", "distance_from_home_km", "txn_count_24h"} <= set(drifted.drifted_features)
    assert {"customer_age", "card_type", "country_risk"}.isdisjoint(drifted.drifted_features)
    assert drifted.share_drifted_features == pytest.approx(len(drifted.drifted_features) / 17, abs=1e-4)


def test_html_is_self_contained_and_renders_the_strongest_features(reports):
    with open(reports["drifted"].html) as handle:
        html = handle.read()
    assert len(html) > 100_000 and "<html" in html.lower()
    assert EXTERNAL_ASSET.search(html) is None
    rendered = reports["drifted"].rendered_features
    assert rendered is not None and len(rendered) == 10  # drift_report_top: the 10 strongest of 17
    for feature in rendered:
        assert f'"column_name": "{feature}"' in html


def test_the_page_says_which_model_night_and_rows_it_compares(reports):
    summary = reports["drifted"]
    with open(summary.html) as handle:
        page = handle.read()
    title = f"Drift of {summary.current} against model v1&#x27;s training reference"
    assert f"<title>{title}</title>" in page and f">{title}</h1>" in page
    assert "night(s): 2026-11-24" in page
    assert f"current rows: {summary.current_rows:,} compared (a fixed-seed sample of 6,000)" in page
    assert f"reference rows: {summary.reference_rows:,}" in page


def test_json_summary_follows_its_documented_shape(reports):
    summary = reports["drifted"]
    with open(summary.json_path) as handle:
        on_disk = json.load(handle)
    assert DriftSummary.model_validate(on_disk) == summary
    assert set(on_disk) >= {"verdict", "share_drifted_features", "features", "predictions", "html"}
    amount = next(f for f in on_disk["features"] if f["name"] == "amount")
    assert set(amount) == {"name", "kind", "method", "score", "threshold", "drifted", "note"}
    assert amount["kind"] == "numeric" and amount["score"] > amount["threshold"] and amount["drifted"]
    assert [p["name"] for p in on_disk["predictions"]] == ["proba_1", "prediction"]
    assert on_disk["current_rows_total"] == 6000 and 4000 <= on_disk["current_rows"] <= 6000


def test_reference_predictions_are_cached_per_model_version(scored, reports):
    root, settings = scored
    cached = list((settings.cache_dir / "drift").glob("reference-outputs-v1-*.parquet"))
    assert len(cached) == 1
    before = cached[0].stat().st_mtime_ns
    build_report(root / "scored" / "clean", root / "reports", settings, name="again")
    assert cached[0].stat().st_mtime_ns == before


def test_current_data_is_sampled_to_a_fixed_size_with_a_fixed_seed(scored):
    root, _ = scored
    first, total = sample_current(root / "scored" / "clean", sample_rows=1000, seed=3)
    second, _ = sample_current(root / "scored" / "clean", sample_rows=1000, seed=3)
    assert total == 6000 and 800 <= len(first) <= 1200
    assert first["transaction_id"].tolist() == second["transaction_id"].tolist()


def test_a_time_window_keeps_only_rows_scored_since(scored):
    root, _ = scored
    future = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(SourceError, match="no rows scored since"):
        sample_current(root / "scored" / "clean", sample_rows=1000, seed=3, since=future)
    past = datetime.now(UTC) - timedelta(days=1)
    assert sample_current(root / "scored" / "clean", sample_rows=10_000, seed=3, since=past)[1] == 6000


@pytest.mark.integration
def test_flow_state_reflects_the_verdict(scored, prefect_server, monkeypatch):
    from prefect.artifacts import Artifact

    from flows.drift_report import drift_report

    root, settings = scored
    monkeypatch.setenv("SCOREPIPE_HOME", str(settings.home))
    monkeypatch.setenv("SCOREPIPE_REGISTRY", str(settings.registry_dir))
    monkeypatch.setenv("SCOREPIPE_DRIFT_SAMPLE_ROWS", "5000")
    drifted = drift_report(current=str(root / "scored" / "drifted"), output=str(root / "flow"), return_state=True)
    assert drifted.is_failed() and drifted.name == "Drift detected"
    assert "features drifted" in drifted.message
    artifact = Artifact.get("drift-report")
    assert artifact is not None and "| amount |" in artifact.data and "drift-date=2026-11-24.html" in artifact.data
    clean = drift_report(current=str(root / "scored" / "clean"), output=str(root / "flow"), return_state=True)
    assert clean.is_completed() and clean.message.startswith("no drift")


def test_cli_exits_non_zero_on_drift(scored, monkeypatch, capsys):
    from scorepipe.cli import main
    from scorepipe.cli.options import DRIFT_EXIT_CODE

    root, settings = scored
    monkeypatch.setenv("SCOREPIPE_HOME", str(settings.home))
    monkeypatch.setenv("SCOREPIPE_REGISTRY", str(settings.registry_dir))
    monkeypatch.setenv("SCOREPIPE_DRIFT_SAMPLE_ROWS", "5000")
    code = main(
        ["drift", "--current", str(root / "scored" / "drifted" / "date=2026-11-24"), "--out", str(root / "cli")]
    )
    assert code == DRIFT_EXIT_CODE
    out = capsys.readouterr().out
    assert "DRIFT:" in out and "drift-date=2026-11-24.html" in out


def test_a_time_window_of_the_live_feed_is_reported(scored):
    """The stream's live window (written by LiveWindow) is a current dataset like a batch partition."""
    from scoring.live_window import LiveWindow

    root, settings = scored
    scorer = Scorer.from_registry(Registry(settings.registry_dir))
    window = LiveWindow(root / "live", roll_rows=1500, roll_seconds=3600)
    frame = synthetic.generate(4000, seed=90, drifted=True, with_target=False)
    for start in range(0, 4000, 1000):
        scored_rows = scorer.score(frame.iloc[start : start + 1000]).drop(columns=["reject_reason"])
        window.append(scored_rows.rename(columns={"transaction_id": "event_id"}))
    window.flush()
    assert len(window.files_written) == 2  # rolled at 2,000 and 4,000 rows
    since = datetime.now(UTC) - timedelta(minutes=5)
    summary = build_report(root / "live", root / "reports", settings, since=since, name="live")
    assert summary.current_rows_total == 4000 and summary.verdict == "drift"
    assert "amount" in summary.drifted_features


def test_unscored_input_is_refused_by_name(tmp_path):
    path = tmp_path / "raw" / "part-0.parquet"
    path.parent.mkdir()
    synthetic.generate(50, seed=1, with_target=False).to_parquet(path)
    with pytest.raises(SourceError, match=r"part-0.parquet is not scored output \(no 'prediction' column\)"):
        sample_current(path.parent, sample_rows=10, seed=1)


def test_every_feature_is_judged_and_only_the_top_k_are_rendered(scored, reports):
    root, settings = scored
    top = build_report(
        root / "scored" / "drifted",
        root / "reports",
        settings.model_copy(update={"drift_report_top": 3}),
        name="top3",
    )
    full = reports["drifted"]
    assert [(f.name, f.score, f.drifted) for f in top.features] == [(f.name, f.score, f.drifted) for f in full.features]
    strongest = sorted(full.features, key=lambda f: f.score / f.threshold, reverse=True)[:3]
    assert top.rendered_features is not None and set(top.rendered_features) == {f.name for f in strongest}
    with open(top.html) as handle:
        page = handle.read()
    assert f"columns shown: 3 of {len(full.features)} features (the strongest drift first)" in page
    hidden = [f.name for f in full.features if f.name not in top.rendered_features]
    assert all(f'"column_name": "{name}"' in page for name in top.rendered_features)
    assert not any(f'"column_name": "{name}"' in page for name in hidden)


def test_a_method_scorepipe_does_not_compute_is_left_to_evidently_for_every_column(scored):
    root, settings = scored
    summary = build_report(
        root / "scored" / "drifted",
        root / "reports",
        settings.model_copy(update={"drift_num_method": "anderson", "drift_num_threshold": 0.05}),
        name="anderson",
    )
    assert summary.rendered_features == [f.name for f in summary.features]
    assert {f.method for f in summary.features if f.kind == "numeric"} == {"anderson"}
    assert "amount" in summary.drifted_features


def test_a_figure_that_disagrees_with_evidentlys_refuses_the_report(scored, monkeypatch):
    import scoring.drift_stats

    root, settings = scored
    real = scoring.drift_stats.numeric_stat

    def off_by_a_millionth(*args):
        stat = real(*args)
        return dataclasses.replace(stat, score=stat.score * (1 + 1e-6)) if stat.column == "amount" else stat

    monkeypatch.setattr(scoring.drift_stats, "numeric_stat", off_by_a_millionth)
    with pytest.raises(ReportError, match=r"drift of 'amount' by wasserstein: scorepipe computed .* Evidently "):
        build_report(root / "scored" / "drifted", root / "reports", settings, name="disagree")


def test_a_feature_with_no_current_value_counts_as_drifted_and_is_not_rendered(scored, tmp_path):
    import pyarrow.parquet as pq

    root, settings = scored
    table = pq.read_table(next((root / "scored" / "clean").rglob("*.parquet")))
    emptied = table.set_column(table.schema.get_field_index("amount"), "amount", pa.nulls(table.num_rows, pa.float64()))
    (tmp_path / "date=2026-11-24").mkdir()
    pq.write_table(emptied, tmp_path / "date=2026-11-24" / "part-0.parquet")
    summary = build_report(tmp_path, root / "reports", settings, name="empty-amount")
    amount = next(f for f in summary.features if f.name == "amount")
    assert amount.score is None and amount.drifted and amount.note == "no values in the current data"
    assert summary.rendered_features is not None and "amount" not in summary.rendered_features
    assert summary.drifted_features == ["amount"]
    from flows.drift_report import markdown

    assert "| amount | wasserstein | none: no values in the current data |" in markdown(summary)


def test_a_column_some_files_lack_is_null_there_whatever_its_type(scored, tmp_path):
    import pyarrow.parquet as pq

    from drift.current import sample_current

    root, _ = scored
    table = pq.read_table(next((root / "scored" / "clean").rglob("*.parquet")))
    pq.write_table(table.slice(0, 100), tmp_path / "a.parquet")
    pq.write_table(table.slice(100, 50).drop_columns(["channel", "amount"]), tmp_path / "b.parquet")
    frame, rows = sample_current(tmp_path, sample_rows=1000, seed=1)
    assert rows == 150 and frame["channel"].iloc[:100].notna().all() and frame["channel"].iloc[100:].isna().all()
    assert frame["amount"].iloc[100:].isna().all() and frame["channel"].dtype == object
