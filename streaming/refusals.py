"""What a broker's refusal means, in words naming who was refused and what to grant or change.

One module for every such message (the preflight's authentication errors and the loop's ACL
refusals), so "who" is worked out one way.
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
