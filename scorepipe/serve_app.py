"""The server's factory for uvicorn's worker processes: an entry point, so it builds the whole settings.

``serving.server`` hands each worker the settings as ``SCOREPIPE_*`` variables (and the model to
follow as ``SCOREPIPE_SERVE_MODEL``); the worker builds them here, through the one function every
entry point uses, so a bad value is a ``SettingsError`` naming the variable.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from monitoring.metrics import ScoringMetrics
from monitoring.payload import PayloadLog
from scorepipe.settings import Settings, load_settings
from serving.app import build_app


def app_from_env() -> FastAPI:
    """Uvicorn's factory: settings and the model from ``SCOREPIPE_*`` variables."""
    settings = load_settings()
    app, _ = build_app(settings, settings.serve_model, payload_log=payload_log_for(settings))
    return app


def payload_log_for(settings: Settings) -> Callable[[ScoringMetrics], PayloadLog] | None:
    """The Kafka payload log when ``serve_payload_topic`` names one: composed here, so serving knows no broker."""
    topic = settings.serve_payload_topic
    if not topic:
        return None

    def build(metrics: ScoringMetrics) -> PayloadLog:
        from streaming.payload_log import KafkaPayloadLog

        return KafkaPayloadLog(settings, topic, metrics)

    return build
