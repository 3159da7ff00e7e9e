"""The one settings object. Built at an entry point (CLI, flow, consumer) and passed down.

The core never reads ``os.environ`` itself: everything configurable arrives through ``Settings``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scoring.errors import SettingsError
from scoring.kafka_properties import settings_from_properties
from scoring.storage import Location

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "AWS_MSK_IAM"]


class Settings(BaseSettings):
    """Configuration for every scorepipe entry point, read from ``SCOREPIPE_*`` variables.

    >>> Settings(home=Path("/tmp/sp")).registry_dir
    Location('/tmp/sp/registry')
    """

    model_config = SettingsConfigDict(env_prefix="SCOREPIPE_", frozen=True, extra="ignore", hide_input_in_errors=True)

    # Where things live, and the scoring core
    home: Path = Field(
        default=Path(".scorepipe"),
        description="Root of everything scorepipe writes (registry, demo data, results).",
    )
    registry: str | None = Field(
        default=None, description="Model registry: a folder or s3://bucket/prefix; default HOME/registry."
    )
    chunk_size: int = Field(default=100_000, gt=0, description="Rows scored per vectorized chunk.")
    min_roc_auc: float = Field(
        default=0.75, ge=0.0, le=1.0, description="Quality gate: minimum holdout ROC AUC to become champion."
    )
    reference_rows: int = Field(
        default=5_000, gt=0, description="Rows of training features kept in the bundle as drift reference."
    )
    seed: int = Field(default=42, description="Seed for synthetic data, splits and sampling.")
    small_frame_shortcut: bool = Field(
        default=True,
        description="Score frames of up to 64 rows with the verified tree shortcut (false: always sklearn).",
    )
    model_check_seconds: float = Field(
        default=1.0, gt=0, description="How often a long-running scorer checks whether its alias moved."
    )

    # Batch runs
    batch_workers: int = Field(
        default=1,
        ge=0,
        description="score-batch: files scored in parallel on a Dask LocalCluster (0: one per core; 1: no Dask).",
    )
    dask_address: str | None = Field(
        default=None, description="score-batch: an existing Dask scheduler (tcp://host:8786) instead of a LocalCluster."
    )

    # MLflow
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

    # Kafka connection and security
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Kafka brokers, host:port[,...].")
    kafka_config: Path | None = Field(
        default=None,
        description="A Kafka client properties file (Java or librdkafka keys); explicit settings win over it.",
    )
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user (PLAIN, SCRAM).")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password (PLAIN, SCRAM).")
    kafka_sasl_oauth_token_url: str | None = Field(
        default=None, description="OAUTHBEARER: the OIDC token endpoint (client-credentials grant)."
    )
    kafka_sasl_oauth_client_id: str | None = Field(default=None, description="OAUTHBEARER: OIDC client id.")
    kafka_sasl_oauth_client_secret: SecretStr | None = Field(
        default=None, description="OAUTHBEARER: OIDC client secret."
    )
    kafka_sasl_oauth_scope: str | None = Field(default=None, description="OAUTHBEARER: scope(s) to ask for.")
    kafka_sasl_oauth_token_provider: str | None = Field(
        default=None,
        description="OAUTHBEARER: your own token provider, module:attribute (a class or a factory taking Settings).",
    )
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA certificate(s) (PEM) that sign the brokers'.")
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate (PEM) for mutual TLS.")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="Client private key (PEM) for mutual TLS.")
    kafka_ssl_key_password: SecretStr | None = Field(default=None, description="Password of the client key.")
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check that the broker's certificate names the host connected to."
    )

    # The stream's topics and behaviour
    features_topic: str = Field(default="features", description="Topic the consumer reads JSON events from.")
    predictions_topic: str = Field(default="predictions", description="Topic predictions are published to.")
    dlq_topic: str = Field(default="features.dlq", description="Dead-letter topic for events that cannot be scored.")
    shadow_topic: str = Field(default="predictions.shadow", description="Topic for a shadow challenger's predictions.")
    consumer_group: str = Field(default="scorepipe", description="Consumer group; more members share partitions.")
    topic_partitions: int = Field(default=4, gt=0, description="Partitions of topics scorepipe creates.")
    stream_batch_events: int = Field(
        default=2000, gt=0, description="Most events scored as one micro-batch (more amortizes per-call model cost)."
    )
    stream_batch_ms: int = Field(
        default=100, gt=0, description="Longest the broker holds a fetch with no event (a partial batch never waits)."
    )
    stream_max_in_flight: int = Field(
        default=3, gt=0, description="Micro-batches sent but not yet acknowledged before the consumer waits."
    )
    stream_delivery_timeout_ms: int = Field(
        default=120_000, gt=0, description="How long the producer retries a result before the batch counts as failed."
    )
    stream_retry_max_seconds: float = Field(
        default=10.0, gt=0, description="Longest back-off before re-reading from the first unacknowledged batch."
    )
    stream_guarantee: Literal["at-least-once", "exactly-once"] = Field(
        default="at-least-once",
        description="exactly-once: results and input offsets commit in one Kafka transaction (read them "
        "with isolation_level=read_committed).",
    )
    stream_transaction_timeout_ms: int = Field(
        default=30_000,
        gt=0,
        description="exactly-once: longest a transaction step may take before it counts as failed.",
    )
    stream_session_timeout_ms: int = Field(
        default=10_000, gt=0, description="How soon a dead consumer's partitions move to the others."
    )

    # The live window (what the stream and the server scored, for drift and performance)
    live_window_rows: int = Field(default=5_000, gt=0, description="Rows per rolled live-window Parquet file.")
    live_window_seconds: float = Field(default=30.0, gt=0, description="Longest a live-window file stays open.")

    # Online scoring (HTTP)
    serve_model_name: str = Field(default="scorepipe", description="Model name in Open Inference Protocol paths.")
    serve_model: str = Field(
        default="champion",
        description="The alias or version `scorepipe serve` follows (its --model; handed to every worker process).",
    )
    serve_max_batch_records: int = Field(default=1000, gt=0, description="Most records in one HTTP request.")
    serve_max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0, description="Largest HTTP request body.")
    api_key: SecretStr | None = Field(
        default=None, description="If set, scoring endpoints need `Authorization: Bearer KEY` or `X-API-Key: KEY`."
    )

    # Monitoring
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port for /metrics, /healthz, /readyz on 127.0.0.1 (none: off)."
    )
    pushgateway_url: str | None = Field(
        default=None, description="Prometheus Pushgateway (host:port or URL) that flows push their figures to."
    )

    # Drift (Evidently)
    # Distances, not p-values: a p-value test flags trivial differences once windows are large, and
    # Evidently would otherwise switch methods with the data's size.
    drift_share: float = Field(
        default=0.3, gt=0.0, le=1.0, description="Share of drifted features at which a dataset counts as drifted."
    )
    drift_num_method: str = Field(default="wasserstein", description="Evidently drift test for numeric columns.")
    drift_cat_method: str = Field(default="jensenshannon", description="Evidently drift test for categorical columns.")
    drift_num_threshold: float = Field(default=0.1, description="Numeric test threshold (distance above = drift).")
    drift_cat_threshold: float = Field(default=0.1, description="Categorical test threshold (distance above = drift).")
    drift_sample_rows: int = Field(
        default=50_000, gt=0, description="Current rows sampled (fixed seed) into a report, whatever the window."
    )

    # Reports over time and performance
    evidently_workspace: str | None = Field(
        default=None,
        description="Evidently workspace every drift and performance report is added to (a folder or "
        "s3://bucket/prefix); default HOME/evidently. `scorepipe ui` serves it.",
    )
    performance_max_auc_drop: float = Field(
        default=0.03, ge=0.0, le=1.0, description="Degraded when live ROC AUC is this far below training's."
    )

    @model_validator(mode="before")
    @classmethod
    def _kafka_config_file(cls, data: Any) -> Any:
        """Fill the ``kafka_*`` settings not given explicitly from the client properties file, if one is named."""
        if not isinstance(data, dict) or not data.get("kafka_config"):
            return data
        from_file = settings_from_properties(Path(str(data["kafka_config"])).expanduser())
        return {**from_file, **{k: v for k, v in data.items() if v is not None}}

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _kafka_security_consistent(self) -> Settings:
        """Refuse combinations kafka-python would accept and then fail on (or quietly ignore)."""
        problems = kafka_security_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Settings:
        """A copy with ``update`` applied, validated like any setting (pydantic's own copy would not check it).

        >>> Settings().model_copy(update={"stream_batch_events": 0})
        Traceback (most recent call last):
        ...
        scoring.errors.SettingsError: invalid setting stream_batch_events = 0: Input should be greater than 0
        """
        if not update:
            return super().model_copy(deep=deep)
        unknown = sorted(set(update) - set(type(self).model_fields))
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        # Only what was set explicitly: a kafka_config file in the update fills the rest.
        values = {name: getattr(self, name) for name in self.model_fields_set}
        try:
            return type(self).model_validate({**values, **update})
        except ValidationError as exc:
            raise SettingsError(describe(exc, dict(update))) from exc

    def as_env(self) -> dict[str, str]:
        """These settings as ``SCOREPIPE_*`` variables, to hand to a child process.

        >>> Settings(chunk_size=10).as_env()["SCOREPIPE_CHUNK_SIZE"]
        '10'
        """
        prefix = self.model_config.get("env_prefix", "")
        values = {name: getattr(self, name) for name in type(self).model_fields}
        return {
            f"{prefix}{name}".upper(): value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            for name, value in values.items()
            if value is not None
        }

    @field_validator("registry", mode="before")
    @classmethod
    def _location_text(cls, value: object) -> object:
        """A Path or a Location is kept as its text (``Path`` would fold ``s3://`` into ``s3:/``)."""
        return value if value is None or isinstance(value, str) else str(value)

    @property
    def registry_dir(self) -> Location:
        return Location(self.registry if self.registry is not None else self.home / "registry")

    @property
    def workspace_dir(self) -> str:
        """The Evidently workspace: a folder, or ``s3://bucket/prefix`` (kept as text: a Path would mangle it)."""
        return self.evidently_workspace or str(self.home / "evidently")

    @property
    def reports_dir(self) -> Path:
        """Default folder for drift reports."""
        return self.home / "reports"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def live_dir(self) -> Path:
        """Where the stream appends scored features for drift reports."""
        return self.home / "live"


def kafka_security_problems(settings: Settings) -> list[str]:
    """What is missing or contradictory in the Kafka security settings, each naming its setting."""
    s = settings
    problems = []
    sasl = s.kafka_security_protocol.startswith("SASL_")
    tls = s.kafka_security_protocol in ("SSL", "SASL_SSL")
    if sasl and s.kafka_sasl_mechanism is None:
        problems.append(f"kafka_security_protocol {s.kafka_security_protocol} needs kafka_sasl_mechanism")
    if not sasl and s.kafka_sasl_mechanism is not None:
        problems.append(
            f"kafka_sasl_mechanism {s.kafka_sasl_mechanism} is set but kafka_security_protocol is "
            f"{s.kafka_security_protocol} (SASL_SSL or SASL_PLAINTEXT?)"
        )
    mechanism = s.kafka_sasl_mechanism if sasl else None
    if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        for name in ("kafka_sasl_username", "kafka_sasl_password"):
            if getattr(s, name) is None:
                problems.append(f"kafka_sasl_mechanism {mechanism} needs {name}")
    if mechanism == "OAUTHBEARER" and s.kafka_sasl_oauth_token_provider is None:
        for name in ("kafka_sasl_oauth_token_url", "kafka_sasl_oauth_client_id", "kafka_sasl_oauth_client_secret"):
            if getattr(s, name) is None:
                problems.append(f"OAUTHBEARER needs {name} (or kafka_sasl_oauth_token_provider)")
    if mechanism == "AWS_MSK_IAM" and s.kafka_security_protocol != "SASL_SSL":
        problems.append("kafka_sasl_mechanism AWS_MSK_IAM needs kafka_security_protocol SASL_SSL")
    files = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    for name in files:
        path = getattr(s, name)
        if path is None:
            continue
        if not tls:
            problems.append(
                f"{name} is set but kafka_security_protocol is {s.kafka_security_protocol} (SSL or SASL_SSL?)"
            )
        elif not Path(path).is_file():
            problems.append(f"{name}: no such file {path}")
    if s.kafka_ssl_keyfile is not None and s.kafka_ssl_certfile is None:
        problems.append("kafka_ssl_keyfile is set without kafka_ssl_certfile")
    return problems


def describe(exc: ValidationError, given: dict[str, Any] | None = None, *, env_prefix: str = "") -> str:
    """Every problem of a validation error, each naming its setting (and its value, unless a secret)."""
    secrets = {n for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)}
    problems = []
    for error in exc.errors():
        if not error["loc"]:  # a check across settings: its message names them (the input may hold secrets)
            problems.append(f"invalid settings: {error['msg'].removeprefix('Value error, ')}")
            continue
        name = ".".join(str(part) for part in error["loc"])
        value = (given or {}).get(name, error.get("input"))
        shown = "" if name in secrets else f" = {value!r}"
        label = f"{env_prefix}{name}".upper() if env_prefix else name
        problems.append(f"invalid setting {label}{shown}: {error['msg']}")
    return "; ".join(problems)


def load_settings() -> Settings:
    """The settings from ``SCOREPIPE_*`` variables; a bad value is a ``SettingsError`` naming each variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe(exc, env_prefix=Settings.model_config.get("env_prefix", ""))) from exc
