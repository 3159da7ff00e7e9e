"""The one exception hierarchy of scorepipe: every error we raise on purpose is a ScoringError."""

from __future__ import annotations


class ScoringError(Exception):
    """Root of every error scorepipe raises on purpose; catch this at entry points."""


class SchemaError(ScoringError):
    """Raised by validation when a whole frame cannot be scored (missing column, uncastable type).

    Lists every problem at once, so one run tells the user everything to fix.
    """

    def __init__(self, problems: list[str], *, where: str = "input frame") -> None:
        self.problems = list(problems)
        self.where = where
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{where} cannot be scored ({len(self.problems)} problem(s)):\n{lines}")


class RegistryError(ScoringError):
    """Raised by the registry for unknown versions or aliases and impossible promotions or rollbacks."""


class IntegrityError(RegistryError):
    """Raised by the registry when an artifact's sha256 does not match the manifest; nothing is unpickled."""


class ModelLoadError(ScoringError):
    """Raised when a model artifact cannot be read or is not a usable classifier."""


class QualityGateError(ScoringError):
    """Raised by training when a model fails the quality gate and must not become champion."""


class SourceError(ScoringError):
    """Raised by entry points when an input (file, partition, event) cannot be read."""


class SinkError(ScoringError):
    """Raised by entry points when results cannot be written or published."""


class SettingsError(ScoringError):
    """Raised by ``CoreSettings`` when a value (from the environment or an override) is invalid; names the setting."""
