"""Settings: sections per layer, composed into one object; values validated, errors naming the setting."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from scorepipe.settings import Settings, load_settings
from scoring import SettingsError


def test_an_override_is_validated_and_the_bad_field_named():
    with pytest.raises(SettingsError, match=r"stream_batch_events = 0: Input should be greater than 0"):
        Settings().model_copy(update={"stream_batch_events": 0})
    with pytest.raises(SettingsError, match="unknown setting.*stream_batch_event\\b"):
        Settings().model_copy(update={"stream_batch_event": 10})


def test_a_valid_override_is_applied_and_the_rest_kept():
    base = Settings(chunk_size=10, api_key="k")
    copy = base.model_copy(update={"stream_batch_events": 7})
    assert (copy.stream_batch_events, copy.chunk_size) == (7, 10)
    assert isinstance(copy.api_key, SecretStr) and copy.api_key.get_secret_value() == "k"


def test_a_bad_environment_value_names_the_variable_and_hides_secrets(monkeypatch):
    monkeypatch.setenv("SCOREPIPE_STREAM_MAX_IN_FLIGHT", "-1")
    with pytest.raises(SettingsError, match="SCOREPIPE_STREAM_MAX_IN_FLIGHT = '-1'"):
        load_settings()


def test_the_cli_reports_a_bad_setting_in_one_line(monkeypatch, capsys):
    from scorepipe.cli import main

    monkeypatch.setenv("SCOREPIPE_CHUNK_SIZE", "zero")
    assert main(["models", "list"]) == 1
    assert "invalid setting SCOREPIPE_CHUNK_SIZE = 'zero'" in capsys.readouterr().out


def test_a_bad_command_line_override_is_refused_before_anything_starts(capsys):
    from scorepipe.cli import main

    assert main(["stream", "--batch-events", "0", "--bootstrap-servers", "127.0.0.1:1"]) == 1
    assert "invalid setting stream_batch_events = 0" in capsys.readouterr().out


def test_each_setting_is_declared_by_one_section_of_the_package_that_uses_it():
    from scorepipe.settings import SECTIONS

    owners: dict[str, list[str]] = {}
    for _, section in SECTIONS:
        for name in section.__dict__.get("__annotations__", {}):
            owners.setdefault(name, []).append(section.__name__)
    assert set(owners) == set(Settings.model_fields), "every setting has a section, and no section has a stray field"
    assert {name: where for name, where in owners.items() if len(where) > 1} == {}
    packages = {section.__name__: section.__module__.rsplit(".", 1)[0] for _, section in SECTIONS}
    assert packages["KafkaSettings"] == packages["StreamSettings"] == "streaming"
    assert packages["CoreSettings"] == "scoring"
    assert packages["MlflowSettings"] == "integrations.mlflow"
    assert all(issubclass(Settings, section) for _, section in SECTIONS)


def test_a_layer_gets_its_section_and_the_sections_it_builds_on_nothing_else():
    from serving.settings import ServeSettings
    from streaming.settings import KafkaSettings, StreamSettings

    assert "kafka_bootstrap_servers" not in ServeSettings.model_fields
    assert "drift_share" not in StreamSettings.model_fields
    assert set(KafkaSettings.model_fields) < set(StreamSettings.model_fields)
    assert all(name.startswith("kafka_") for name in KafkaSettings.model_fields)


def test_a_flow_builds_its_settings_the_one_way(monkeypatch):
    from flows.settings import load_flow_settings

    monkeypatch.setenv("SCOREPIPE_DRIFT_SHARE", "2")
    monkeypatch.setenv("SCOREPIPE_KAFKA_SASL_PASSWORD", "never-shown")
    with pytest.raises(SettingsError, match=r"SCOREPIPE_DRIFT_SHARE = '2'") as raised:
        load_flow_settings()
    assert "never-shown" not in str(raised.value)


def test_the_servers_factory_builds_the_whole_settings_the_one_way(monkeypatch):
    from scorepipe.serve_app import app_from_env

    monkeypatch.setenv("SCOREPIPE_SERVE_MAX_BODY_BYTES", "-5")
    with pytest.raises(SettingsError, match=r"SCOREPIPE_SERVE_MAX_BODY_BYTES = '-5'"):
        app_from_env()
