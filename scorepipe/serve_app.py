"""The server's factory for uvicorn's worker processes: an entry point, so it builds the whole settings.

``serving.server`` hands each worker the settings as ``SCOREPIPE_*`` variables (and the model to
follow as ``SCOREPIPE_SERVE_MODEL``); the worker builds them here, through the one function every
entry point uses, so a bad value is a ``SettingsError`` naming the variable.
"""

from __future__ import annotations

from fastapi import FastAPI

from scorepipe.settings import load_settings
from serving.app import build_app


def app_from_env() -> FastAPI:
    """Uvicorn's factory: settings and the model from ``SCOREPIPE_*`` variables."""
    settings = load_settings()
    app, _ = build_app(settings, settings.serve_model)
    return app
