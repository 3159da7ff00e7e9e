"""MLflow's settings: the tracking server models come from and runs go to."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from scoring.settings import CoreSettings


class MlflowSettings(CoreSettings):
    """The tracking server, and what scorepipe logs to it."""

    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "SCOREPIPE_MLFLOW_TRACKING_URI", "mlflow_tracking_uri"
        ),  # the second is MLflow's own variable
        description="MLflow tracking server (also MLFLOW_TRACKING_URI): where mlflow: models come from and runs go.",
    )
    mlflow_log: bool = Field(
        default=True,
        description="With a tracking URI: log train, drift and performance runs to MLflow (false: never).",
    )
    mlflow_experiment: str = Field(default="scorepipe", description="MLflow experiment scorepipe's runs go to.")
    mlflow_model_name: str = Field(
        default="scorepipe", description="Registered MLflow model that `scorepipe train` logs versions of."
    )
