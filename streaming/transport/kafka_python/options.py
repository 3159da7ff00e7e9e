"""The connection options every kafka-python client shares: brokers, authentication, encryption.

They come from one ``KafkaSettings`` section, so they reach every client at once: the stream's
consumer and producer, the demo producer, the label sink, topic creation, ``scorepipe status``,
the demo and the benchmarks.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient

from streaming.settings import KafkaSettings
from streaming.transport.kafka_python.oauth import token_provider
from streaming.transport.kafka_python.preflight import ensure_access


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """Options every client shares: where the brokers are, and how to authenticate and encrypt.

    Only options that apply are passed (kafka-python's admin client refuses some it does not know).
    Secrets leave their ``SecretStr`` only here, on their way into the client.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_check_hostname"] = settings.kafka_ssl_check_hostname
        for option, path in (
            ("ssl_cafile", settings.kafka_ssl_cafile),
            ("ssl_certfile", settings.kafka_ssl_certfile),
            ("ssl_keyfile", settings.kafka_ssl_keyfile),
        ):
            if path is not None:
                options[option] = str(path)
        if settings.kafka_ssl_key_password is not None:
            options["ssl_password"] = settings.kafka_ssl_key_password.get_secret_value()
    if settings.kafka_security_protocol.startswith("SASL_"):
        mechanism = settings.kafka_sasl_mechanism
        options["sasl_mechanism"] = mechanism
        if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            assert settings.kafka_sasl_password is not None  # checked by StreamSettings
            options["sasl_plain_username"] = settings.kafka_sasl_username
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
        elif mechanism == "OAUTHBEARER":
            options["sasl_oauth_token_provider"] = token_provider(settings)
        # AWS_MSK_IAM: kafka-python signs with the AWS credentials and region of the environment (botocore)
    return options


def checked_options(settings: KafkaSettings) -> dict[str, Any]:
    """The connection options, after the brokers accepted them once (``KafkaAccessError`` if they refuse)."""
    options = connection_options(settings)
    ensure_access(settings, options, probe=KafkaAdminClient)  # one bootstrap, on a side thread
    return options
