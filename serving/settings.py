"""The HTTP server's settings: the model it follows, request limits, the API key."""

from __future__ import annotations

from pydantic import Field, SecretStr

from scoring.settings import CoreSettings


class ServeSettings(CoreSettings):
    """Online scoring over HTTP."""

    serve_model: str = Field(
        default="champion",
        description="The alias or version `scorepipe serve` follows (its --model; handed to every worker process).",
    )
    serve_max_batch_records: int = Field(default=1000, gt=0, description="Most records in one HTTP request.")
    serve_max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0, description="Largest HTTP request body.")
    api_key: SecretStr | None = Field(
        default=None, description="If set, scoring endpoints need `Authorization: Bearer KEY` or `X-API-Key: KEY`."
    )
