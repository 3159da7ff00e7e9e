"""The scorepipe command line, in-process: train, registry management, bring-your-own model, score."""

from __future__ import annotations

import json

import joblib
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from scorepipe.cli import main
from scoring import Registry, Scorer, synthetic


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SCOREPIPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_train_promotes_a_model_that_passes_the_gate(home, capsys):
    assert main(["train", "--rows", "4000"]) == 0
    registry = Registry(home / "registry")
    assert registry.aliases() == {"champion": 1}
    assert "passed the quality gate" in capsys.readouterr().out


def test_train_that_fails_the_gate_registers_but_does_not_promote(home, monkeypatch, capsys):
    monkeypatch.setenv("SCOREPIPE_MIN_ROC_AUC", "0.999")
    assert main(["train", "--rows", "3000"]) == 3
    registry = Registry(home / "registry")
    assert [v.version for v in registry.versions()] == [1] and registry.aliases() == {}
    assert "registered but not promoted" in capsys.readouterr().out


def test_models_promote_rollback_list_show(home, capsys):
    main(["train", "--rows", "3000"])
    main(["train", "--rows", "3000"])
    assert main(["models", "promote", "v2"]) == 0
    assert Registry(home / "registry").aliases()["champion"] == 2
    assert main(["models", "rollback"]) == 0
    assert Registry(home / "registry").aliases()["champion"] == 1
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "v1" in listing and "v2" in listing and "champion" in listing
    assert main(["models", "show", "champion"]) == 0
    shown = capsys.readouterr().out
    assert "merchant_category" in shown and "sha256" in shown
    assert main(["models", "show", "v7"]) == 1
    assert "unknown model 'v7'" in capsys.readouterr().out


def test_register_your_own_model_and_score_with_it(home, tmp_path, capsys):
    train = synthetic.generate(3000, seed=1)
    features = ["amount", "hour_of_day", "failed_logins_7d", "txn_count_24h", "distance_from_home_km", "card_present"]
    model = LogisticRegression(max_iter=1000).fit(train[features], train[synthetic.TARGET])
    joblib.dump(model, tmp_path / "model.joblib")
    train.to_parquet(tmp_path / "train.parquet")
    code = main(
        [
            "models",
            "register",
            str(tmp_path / "model.joblib"),
            "--reference",
            str(tmp_path / "train.parquet"),
            "--target",
            synthetic.TARGET,
            "--alias",
            "challenger",
        ]
    )
    assert code == 0
    registry = Registry(home / "registry")
    assert registry.aliases() == {"challenger": 1}
    assert registry.load(1).bundle.schema.names == features
    assert registry.info(1).metrics["roc_auc"] > 0.75
    synthetic.generate(500, seed=2, with_target=False).to_parquet(tmp_path / "in.parquet")
    assert main(["score", str(tmp_path / "in.parquet"), str(tmp_path / "out"), "--model", "challenger"]) == 0
    scored = pd.read_parquet(tmp_path / "out" / "in.parquet")
    assert len(scored) == 500
    expected = model.predict_proba(scored[features])[:, 1]
    assert (scored["proba_1"].to_numpy() == expected).all()


def test_errors_are_one_clear_line_and_a_non_zero_exit(home, tmp_path, capsys):
    assert main(["score", str(tmp_path / "missing"), str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "missing' is neither a file, a folder nor a glob" in out
    synthetic.generate(5, with_target=False).to_parquet(tmp_path / "in.parquet")
    assert main(["score", str(tmp_path / "in.parquet"), str(tmp_path / "out")]) == 1
    assert "no model yet; run `scorepipe train` first" in capsys.readouterr().out


def test_score_with_a_shadow_then_compare_writes_agreement(home, tmp_path, capsys, bundle, challenger_bundle):
    registry = Registry(home / "registry")
    registry.promote(registry.register(bundle), "champion")
    registry.promote(registry.register(challenger_bundle), "challenger")
    synthetic.generate(800, seed=3, with_target=False).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out"
    assert main(["score", str(tmp_path / "in.parquet"), str(out), "--shadow", "challenger"]) == 0
    assert (out / "_shadow" / "in.parquet").exists()
    capsys.readouterr()
    assert main(["compare", str(out / "in.parquet"), "--out", str(tmp_path / "cmp.json")]) == 0
    printed = capsys.readouterr().out
    assert "800" in printed and "v1" in printed and "v2" in printed

    [pair] = json.loads((tmp_path / "cmp.json").read_text())["pairs"]
    assert pair["rows_compared"] == 800 and 0.5 < pair["label_agreement"] <= 1
    truth = synthetic.generate(800, seed=3)[[synthetic.ID_COLUMN, synthetic.TARGET]]
    truth.to_parquet(tmp_path / "labels.parquet")
    args = ["--labels", str(tmp_path / "labels.parquet"), "--label-column", synthetic.TARGET]
    assert main(["compare", str(out / "in.parquet"), "--out", str(tmp_path / "cmp.json"), *args]) == 0
    outcomes = json.loads((tmp_path / "cmp.json").read_text())["outcomes"]
    assert outcomes["rows"] == 800 and outcomes["ci95_low"] <= outcomes["difference"] <= outcomes["ci95_high"]
    assert "on 800 labelled rows" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "in.parquet")]) == 1  # never scored with a shadow
    assert "no shadow outputs" in capsys.readouterr().out


def test_a_broken_shadow_never_stops_the_champion(home, tmp_path, capsys, bundle):
    registry = Registry(home / "registry")
    registry.promote(registry.register(bundle), "champion")
    synthetic.generate(100, seed=4, with_target=False).to_parquet(tmp_path / "in.parquet")
    assert main(["score", str(tmp_path / "in.parquet"), str(tmp_path / "out"), "--shadow", "challenger"]) == 0
    assert "shadow 'challenger' skipped" in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "out" / "in.parquet")) == 100


@pytest.mark.integration
def test_status_shows_aliases_and_the_groups_lag(stream_settings, monkeypatch, capsys):
    from streaming.consumer import score_stream
    from streaming.producer import produce
    from streaming.topics import ensure_topics

    settings = stream_settings()
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    ensure_topics(settings)
    produce(settings, count=300, seed=5)
    score_stream(settings, Scorer.from_registry(Registry(settings.registry_dir))).run(idle_exit_seconds=1)
    produce(settings, count=40, seed=6)  # not consumed: the lag
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "champion v1" in out and settings.consumer_group in out
    flat = " ".join(out.split())  # the table title wraps at the console's width
    assert f"group {settings.consumer_group} (Empty, 0 member(s))" in flat  # the consumer left the group
    assert "PREFECT_API_URL is not set" in out
    lags = [int(line.split("│")[-2].replace(",", "")) for line in out.splitlines() if line.count("│") == 5]
    assert sum(lags) == 40
