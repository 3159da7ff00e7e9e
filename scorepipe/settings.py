"""The one settings object every entry point builds: each layer's section, composed.

Each package owns its section (``streaming.settings``, ``serving.settings``, ...) and a layer's
code is annotated with its own; only the entry points (the CLI, the flows, the server's factory)
know them all. ``load_settings`` is the one way they build it from ``SCOREPIPE_*`` variables.
"""

from __future__ import annotations

from batch.settings import BatchSettings
from drift.settings import DriftSettings
from flows.settings import FlowSettings
from gate.settings import GateSettings
from integrations.mlflow.settings import MlflowSettings
from monitoring.settings import MonitoringSettings
from performance.settings import PerformanceSettings
from reports.settings import ReportSettings
from scoring.settings import CoreSettings, DriftTestSettings, LiveDriftSettings, Section, load
from serving.settings import ServeSettings
from streaming.settings import KafkaSettings, StreamSettings


class Settings(StreamSettings, ServeSettings, FlowSettings):
    """Configuration for every scorepipe entry point, read from ``SCOREPIPE_*`` variables.

    >>> Settings(chunk_size=10).model_copy(update={"stream_batch_events": 500}).stream_batch_events
    500
    """


SECTIONS: tuple[tuple[str, type[Section]], ...] = (
    ("The scoring core", CoreSettings),
    ("Kafka connection and security", KafkaSettings),
    ("The stream", StreamSettings),
    ("Online scoring (HTTP)", ServeSettings),
    ("Batch runs", BatchSettings),
    ("Monitoring", MonitoringSettings),
    ("Reports", ReportSettings),
    ("Drift tests (reports and live windows)", DriftTestSettings),
    ("Live drift (stream and server)", LiveDriftSettings),
    ("Drift reports", DriftSettings),
    ("Performance", PerformanceSettings),
    ("The canary gate", GateSettings),
    ("MLflow", MlflowSettings),
)
"""Each section's title and class, in the order the configuration reference lists them.

Each field belongs to the one section that declares it.
"""


def load_settings() -> Settings:
    """The settings from ``SCOREPIPE_*`` variables; a bad value is a ``SettingsError`` naming each variable."""
    return load(Settings)
