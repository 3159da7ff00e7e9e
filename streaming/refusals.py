"""What a broker's refusal means, in words naming who was refused and what to grant or change.

One module for every such message (the transports' preflight errors and the loop's ACL
refusals), so "who" is worked out one way and both transports say the same thing.
"""

from __future__ import annotations

from streaming.settings import KafkaSettings, StreamSettings
from streaming.transport.base import NotAuthorized


def principal(settings: KafkaSettings) -> str:
    """Who the brokers see: the SASL user or OAuth client, the AWS identity, the client certificate, or nobody named."""
    mechanism = settings.kafka_sasl_mechanism if settings.kafka_security_protocol.startswith("SASL_") else None
    if mechanism == "OAUTHBEARER":
        return f"OAuth client {settings.kafka_sasl_oauth_client_id or settings.kafka_sasl_oauth_token_provider}"
    if mechanism == "AWS_MSK_IAM":
        return "the AWS identity of this environment"
    if mechanism is not None and settings.kafka_sasl_username:
        return f"user {settings.kafka_sasl_username}"
    if settings.kafka_ssl_certfile is not None:
        return f"the client certificate {settings.kafka_ssl_certfile}"
    return "this client"


def write_refusal(settings: StreamSettings, error: BaseException) -> str:
    """Which WRITE the ACLs refuse, for ``/readyz`` and the log (the client names the topic in the error)."""
    text = str(error)
    outputs = (settings.predictions_topic, settings.dlq_topic, settings.shadow_topic)
    topics = [t for t in outputs if t in text] or [t for t in outputs[:2]]
    return (
        f"not authorized to WRITE to topic {' or '.join(topics)} ({principal(settings)}; Kafka ACLs): "
        "nothing past the last delivered batch is committed; retrying until the ACL allows it"
    )


def read_refusal(settings: StreamSettings, error: NotAuthorized) -> str:
    """Which READ the ACLs refuse: the input topic, or the consumer group."""
    if error.resource == "group":
        what = f"READ for consumer group {settings.consumer_group}"
    else:
        what = f"READ on topic {settings.features_topic}"
    refused = str(error).split(":", 1)[0]  # the client's name for the refusal
    return f"Kafka ACLs do not allow {what} ({principal(settings)}): {refused}; grant it and start again"


# -- the brokers refusing the client itself (each transport's preflight maps its library's error here) --


def login_refused(settings: KafkaSettings, reason: str) -> str:
    mechanism = settings.kafka_sasl_mechanism
    hints = {
        "OAUTHBEARER": "the broker rejected the token: check its issuer, audience, scope and the client's roles",
        "AWS_MSK_IAM": "check its IAM policy (kafka-cluster:Connect)",
    }
    hint = hints.get(str(mechanism), "check kafka_sasl_username, kafka_sasl_password and kafka_sasl_mechanism")
    brokers = settings.kafka_bootstrap_servers
    return f"Kafka authentication failed for {principal(settings)} ({mechanism}) at {brokers}: {reason} ({hint})"


def mechanism_not_enabled(settings: KafkaSettings, enabled: list[str] | None) -> str:
    brokers, mechanism = settings.kafka_bootstrap_servers, settings.kafka_sasl_mechanism
    if enabled is None:
        return (
            f"Kafka broker at {brokers} does not enable SASL mechanism {mechanism}: "
            "set kafka_sasl_mechanism to one its listener enables"
        )
    return (
        f"Kafka broker at {brokers} does not enable SASL mechanism {mechanism} "
        f"(it enables {', '.join(enabled) or 'none'}): set kafka_sasl_mechanism to one of them"
    )


def certificate_names_other_host(settings: KafkaSettings, detail: str) -> str:
    return (
        f"the TLS certificate of the Kafka broker at {settings.kafka_bootstrap_servers} does not name that host "
        f"({detail}): connect by a name the certificate holds (kafka_bootstrap_servers), "
        "or turn kafka_ssl_check_hostname off"
    )


def certificate_not_trusted(settings: KafkaSettings, detail: str) -> str:
    trusted = settings.kafka_ssl_cafile or "the system's CA certificates"
    return (
        f"the TLS certificate of the Kafka broker at {settings.kafka_bootstrap_servers} is not trusted ({detail}; "
        f"trusted: {trusted}): set kafka_ssl_cafile to the CA certificate that signed it"
    )


def client_certificate_refused(settings: KafkaSettings) -> str:
    brokers = settings.kafka_bootstrap_servers
    if settings.kafka_ssl_certfile is None:
        return (
            f"the Kafka broker at {brokers} requires a client certificate (mutual TLS): "
            "set kafka_ssl_certfile and kafka_ssl_keyfile"
        )
    return (
        f"the Kafka broker at {brokers} refused the client certificate {settings.kafka_ssl_certfile} "
        "(kafka_ssl_certfile): is it signed by a CA the broker trusts, and not expired?"
    )


def tls_hung_up(settings: KafkaSettings) -> str:
    return (
        f"the Kafka listener at {settings.kafka_bootstrap_servers} hung up on the TLS handshake (is it a TLS "
        f"listener?): kafka_security_protocol is {settings.kafka_security_protocol} (PLAINTEXT or SASL_PLAINTEXT "
        "for this listener?)"
    )
