"""The HTTP server's settings: the model it follows, request limits, the API key."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from scoring.settings import CoreSettings, LiveDriftSettings


class ServeSettings(CoreSettings, LiveDriftSettings):
    """Online scoring over HTTP."""

    serve_model: str = Field(
        default="champion",
        description="The alias or version `scorepipe serve` follows (its --model; handed to every worker process).",
    )
    serve_shadow: str | None = Field(
        default=None,
        description="A challenger (alias or version) `scorepipe serve` also scores, off the request path "
        "(its --shadow; handed to every worker process).",
    )
    serve_max_batch_records: int = Field(default=1000, gt=0, description="Most records in one HTTP request.")
    serve_max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0, description="Largest HTTP request body.")
    serve_canary_key_header: str = Field(
        default="x-canary-key",
        description="Under a canary plan: the request header whose value decides the arm (one key, one model).",
    )
    serve_canary_key_field: str | None = Field(
        default=None,
        description="Under a canary plan: a record field that decides its arm (taken out before scoring); "
        "else the header, else a random key the response reports.",
    )
    serve_live_window: bool = Field(
        default=True,
        description="Append what the server scores to the live window (HOME/live) for drift, performance and the "
        "canary gate; each JSON result gets a prediction_id that /feedback takes labels for.",
    )
    serve_labels_dir: str | None = Field(
        default=None, description="Where /feedback writes label files (a folder or s3://...); default HOME/labels."
    )
    serve_payload_topic: str | None = Field(
        default=None,
        description="Log each scoring request and its response to this Kafka topic (the stream's connection and "
        "security settings), off the request path. None: no payload log.",
    )
    serve_rate_limit: str | None = Field(
        default=None,
        description="Requests allowed per API key (or client address), e.g. 100/second or 100/second;2000/minute; "
        "past it, 429 with Retry-After. None: no limit.",
    )
    serve_rate_limit_storage: str | None = Field(
        default=None,
        description="Where the limit's counts live (a limits storage URI: redis://host:6379 to share them across "
        "pods); default: memory, or one file the workers of `scorepipe serve --workers N` share.",
    )
    api_key: SecretStr | None = Field(
        default=None, description="If set, scoring endpoints need `Authorization: Bearer KEY` or `X-API-Key: KEY`."
    )

    @field_validator("serve_rate_limit")
    @classmethod
    def _a_rate_limit(cls, value: str | None) -> str | None:
        """The limit in ``limits``' notation, refused here (naming the setting) rather than at the first request."""
        if value is None:
            return None
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit ({exc}); e.g. 100/second or 100/second;2000/minute") from None
        return value

    @property
    def labels_dir(self) -> str:
        """Where ``/feedback`` labels go (kept as text: a Path would mangle ``s3://``)."""
        return self.serve_labels_dir or str(self.home / "labels")
