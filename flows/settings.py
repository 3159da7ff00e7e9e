"""The flows' settings: the sections of the batch engine and both reports, built the one way."""

from __future__ import annotations

from batch.settings import BatchSettings
from drift.settings import DriftSettings
from gate.settings import GateSettings
from performance.settings import PerformanceSettings
from scoring.settings import load


class FlowSettings(BatchSettings, DriftSettings, PerformanceSettings, GateSettings):
    """What the flows read: ``score-batch``, both reports, ``canary-analysis`` (MLflow and monitoring included)."""


def load_flow_settings() -> FlowSettings:
    """The flows' settings from ``SCOREPIPE_*`` variables; a bad value is a ``SettingsError`` naming each variable."""
    return load(FlowSettings)
