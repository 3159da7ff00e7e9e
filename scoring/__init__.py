"""scorepipe's scoring core: bundle, registry, schema and validation, the Scorer, settings, errors.

Pure Python over pandas, pyarrow and scikit-learn: no orchestration, broker or report imports,
so batch, stream and drift entry points all share it unchanged.
"""

from scoring.bundle import ModelBundle
from scoring.errors import (
    IntegrityError,
    ModelLoadError,
    QualityGateError,
    RegistryError,
    SchemaError,
    ScoringError,
    SettingsError,
    SinkError,
    SourceError,
)
from scoring.registry import LoadedModel, Registry
from scoring.schema import FeatureSchema, FeatureSpec, learn_schema
from scoring.scorer import Scorer, split_rejected
from scoring.settings import CoreSettings
from scoring.validation import ValidatedFrame, validate

__all__ = [
    "CoreSettings",
    "FeatureSchema",
    "FeatureSpec",
    "IntegrityError",
    "LoadedModel",
    "ModelBundle",
    "ModelLoadError",
    "QualityGateError",
    "Registry",
    "RegistryError",
    "SchemaError",
    "Scorer",
    "ScoringError",
    "SettingsError",
    "SinkError",
    "SourceError",
    "ValidatedFrame",
    "learn_schema",
    "split_rejected",
    "validate",
]
