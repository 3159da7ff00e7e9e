"""Settings: overrides and environment values are validated, and errors name the setting."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from scoring import Settings, SettingsError
from scoring.settings import load_settings


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
