"""The one MLflow client factory, and how a tracking URI is found and shown.

MLflow's client takes its retry and output behaviour only from environment variables, so the
factory sets scorepipe's defaults there (``setdefault``: a user's own values win). This is the one
place scorepipe writes the environment, and it is outside the core.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from scoring.errors import SettingsError

if TYPE_CHECKING:
    from integrations.mlflow.settings import MlflowSettings


# MLflow's client retries an unreachable server 7 times with doubling waits (over 4 minutes) by
# default; a scorer checking an alias every second should hear within seconds. Users' own values win.
CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # scorepipe says what it downloaded itself
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # and prints the run's address in its own words
}


def mlflow_client(tracking_uri: str | None) -> Any:
    """The one MLflow client factory, for the server at ``tracking_uri``.

    The URI is required: MLflow's own default would quietly create a local store and report every
    model as missing.
    """
    if not tracking_uri:
        raise SettingsError(
            "no MLflow tracking server: set MLFLOW_TRACKING_URI (or SCOREPIPE_MLFLOW_TRACKING_URI, or pass "
            "--tracking-uri); `scorepipe mlflow up` starts a local one"
        )
    for name, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def shown(tracking_uri: str | None) -> str:
    """A tracking URI fit for logs and output: any ``user:password@`` is dropped.

    >>> shown("https://ci:s3cret@mlflow.example.com/api")
    'https://mlflow.example.com/api'
    """
    from urllib.parse import urlsplit, urlunsplit

    if not tracking_uri:
        return "(no tracking URI)"
    parts = urlsplit(tracking_uri)
    if parts.username is None and parts.password is None:
        return tracking_uri
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))


def tracking_uri(settings: MlflowSettings) -> str | None:
    """Where to log, or None when logging back is off."""
    return settings.mlflow_tracking_uri if settings.mlflow_log else None
