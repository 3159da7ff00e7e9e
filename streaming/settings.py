"""The stream's settings: the Kafka connection (every client's), and the stream's topics and behaviour."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from scoring.settings import CoreSettings, LiveDriftSettings, Section
from streaming.kafka_properties import settings_from_properties

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "AWS_MSK_IAM"]


class KafkaSettings(Section):
    """Where the brokers are and how every client authenticates and encrypts (or a client properties file)."""

    kafka_client: Literal["kafka-python", "confluent"] = Field(
        default="kafka-python",
        description="The Kafka client library behind the stream's transport boundary (streaming/transport/): "
        "kafka-python (pure Python, the default) or confluent (librdkafka: `pip install scorepipe[confluent]`).",
    )
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
    def _kafka_security_consistent(self) -> KafkaSettings:
        """Refuse combinations kafka-python would accept and then fail on (or quietly ignore)."""
        problems = kafka_security_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


class StreamSettings(CoreSettings, KafkaSettings, LiveDriftSettings):
    """The stream's topics, group and delivery, over the core's settings and the Kafka connection."""

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
    stream_linger_ms: int = Field(
        default=0,
        ge=0,
        description="How long a batch smaller than stream_batch_events waits for more events before it is scored "
        "(0: scored at once). Fewer, larger batches cost less CPU per event at moderate rates.",
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


def kafka_security_problems(settings: KafkaSettings) -> list[str]:
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
