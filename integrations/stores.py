"""The model stores an entry point can name by prefix (``--model mlflow:models:/fraud@champion``).

Each store's client is imported only when a reference names it, so a scorer that serves from the
local registry never loads MLflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scoring.errors import SettingsError

if TYPE_CHECKING:
    from scoring.model_source import ModelSource, SourceFactory
    from scoring.registry import Registry
    from scoring.settings import CoreSettings


def model_stores() -> dict[str, SourceFactory]:
    """Every store scorepipe offers, keyed by the prefix that names it."""
    return {"mlflow:": _mlflow}


def _mlflow(registry: Registry, ref: str, settings: CoreSettings | None) -> ModelSource:
    try:
        from integrations.mlflow.source import MLflowAlias
    except ImportError as exc:
        raise SettingsError(f"{ref}: the client for mlflow: models is not installed ({exc})") from None
    from integrations.mlflow.settings import MlflowSettings

    if settings is not None and not isinstance(settings, MlflowSettings):
        # the entry points' settings hold every section; a core-only caller gets MLflow's from the environment
        settings = MlflowSettings.model_validate(settings.model_dump(exclude_unset=True))
    return MLflowAlias(registry, ref, settings)
