"""librdkafka's configuration from the connection settings every client shares: brokers, TLS, SASL.

The same ``KafkaSettings`` (and ``--kafka-config`` properties file) as the kafka-python transport,
mapped onto librdkafka's names. Secrets leave their ``SecretStr`` only here, on their way into
the client. librdkafka reports a refused login or an untrusted certificate to the error callback
within a second or so, and keeps retrying; ``AccessWatch`` turns the first such report into a
``KafkaAccessError`` naming the cause, as the kafka-python transport's preflight does.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from scoring.errors import SettingsError
from streaming import refusals
from streaming.errors import KafkaAccessError
from streaming.settings import KafkaSettings

log = logging.getLogger("scorepipe.kafka")
LIBRDKAFKA_LOG = logging.getLogger("scorepipe.librdkafka")


class WithoutConnectionChatter(logging.Filter):
    """librdkafka logs every failed connection attempt (facility FAIL) on its own; scorepipe says it once.

    A broker away is reported by the stream's poller and readiness check, a refused login or
    certificate by the error callback (``AccessWatch``): the retries themselves are left out.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        facility = record.args[0] if isinstance(record.args, tuple) and record.args else None
        return facility != "FAIL"


LIBRDKAFKA_LOG.addFilter(WithoutConnectionChatter())


class ClientLog:
    """One client's librdkafka log, handed on to Python's logging; it keeps the reason of a fatal error.

    librdkafka raises a fatal error as ``_FATAL: Local: Fatal error`` and says why only in its log
    (facility FATAL); the producer names the reason from here.
    """

    def __init__(self) -> None:
        self.fatal: str | None = None

    def log(self, level: int, message: str, *args: Any) -> None:
        if args and args[0] == "FATAL":
            self.fatal = str(args[-1])
        LIBRDKAFKA_LOG.log(level, message, *args)


PREFLIGHT_S = 8.0
TOKEN_RECHECK_S = 60.0
_VERIFIED: set[tuple[Any, ...]] = set()
_LOCK = threading.Lock()

# What librdkafka reports, on its error callback, when the brokers refuse the client itself.
ACCESS_ERRORS = {KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED}


def connection_config(settings: KafkaSettings) -> dict[str, Any]:
    """Librdkafka options for the brokers and the settings' security (only those that apply)."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol.lower(),
        "logger": ClientLog(),  # through Python's logging, not straight to stderr
        "log.connection.close": False,  # an idle connection closed by the broker is not news
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        config["ssl.endpoint.identification.algorithm"] = "https" if settings.kafka_ssl_check_hostname else "none"
        for option, path in (
            ("ssl.ca.location", settings.kafka_ssl_cafile),
            ("ssl.certificate.location", settings.kafka_ssl_certfile),
            ("ssl.key.location", settings.kafka_ssl_keyfile),
        ):
            if path is not None:
                config[option] = str(path)
        if settings.kafka_ssl_key_password is not None:
            config["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
    if settings.kafka_security_protocol.startswith("SASL_"):
        mechanism = settings.kafka_sasl_mechanism
        if mechanism == "AWS_MSK_IAM":
            raise SettingsError(
                "kafka_sasl_mechanism AWS_MSK_IAM is not offered by the confluent transport (librdkafka has no "
                "IAM signer): use kafka_client=kafka-python for MSK IAM, or SCRAM/mTLS on MSK"
            )
        config["sasl.mechanism"] = mechanism
        if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            assert settings.kafka_sasl_password is not None  # checked by KafkaSettings
            config["sasl.username"] = settings.kafka_sasl_username
            config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
        elif mechanism == "OAUTHBEARER":
            config["oauth_cb"] = oauth_callback(settings)
    return config


def oauth_callback(settings: KafkaSettings) -> Any:
    """Librdkafka's ``oauth_cb``: the token of the settings' provider (the one both transports share).

    The provider caches its token until shortly before it expires; librdkafka is told to ask again
    within a minute, so it always holds the provider's current token.
    """
    from streaming.transport.kafka_python.oauth import token_provider

    provider = token_provider(settings)

    def token(_config: str) -> tuple[str, float]:
        return provider.token(), time.time() + TOKEN_RECHECK_S

    return token


def client_config(settings: KafkaSettings, role: str, options: dict[str, Any]) -> dict[str, Any]:
    """The connection's options with ``options`` on top, once the brokers accepted them (else ``KafkaAccessError``)."""
    ensure_access(settings)
    return {**connection_config(settings), "error_cb": AccessWatch(settings, role), **options}


def ensure_access(settings: KafkaSettings) -> None:
    """Raise ``KafkaAccessError`` within seconds if the brokers refuse these credentials or certificates.

    librdkafka retries a refused login for ever, reporting it on the error callback; one metadata
    request is tried here until it answers, a refusal is reported, or ``PREFLIGHT_S`` pass (a broker
    merely unreachable is left to the clients' own retrying). PLAINTEXT has nothing to refuse.
    A configuration that connected once is not checked again in the process.
    """
    if settings.kafka_security_protocol == "PLAINTEXT":
        return
    if settings.kafka_security_protocol.startswith("SASL_") and settings.kafka_sasl_mechanism == "OAUTHBEARER":
        _check_token(settings)  # librdkafka would wait 10 s for a token before saying anything
    key = _identity(settings)
    with _LOCK:
        if key in _VERIFIED:
            return
    from confluent_kafka.admin import AdminClient

    watch = AccessWatch(settings, "preflight")
    config: dict[str, Any] = {**connection_config(settings), "error_cb": watch}
    admin = AdminClient(config)
    deadline = time.monotonic() + PREFLIGHT_S
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=0.5)
        except KafkaException:
            admin.poll(0)  # serves the error callback: a refusal lands in the watch
            if watch.refused is not None:
                raise watch.refused from None
            continue
        with _LOCK:
            _VERIFIED.add(key)
        return


def _check_token(settings: KafkaSettings) -> None:
    """The OAUTHBEARER provider gives a token (cached for every client), or its refusal is named now."""
    from streaming.transport.kafka_python.oauth import TokenError, token_provider

    try:
        token_provider(settings).token()
    except TokenError as exc:
        raise KafkaAccessError(f"{exc} (check kafka_sasl_oauth_client_id and kafka_sasl_oauth_client_secret)") from None


def _identity(settings: KafkaSettings) -> tuple[Any, ...]:
    secret = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
    return (
        settings.kafka_bootstrap_servers,
        settings.kafka_security_protocol,
        settings.kafka_sasl_mechanism,
        settings.kafka_sasl_username,
        hashlib.sha256(secret.encode()).hexdigest() if secret else None,
        settings.kafka_ssl_cafile,
        settings.kafka_ssl_certfile,
        settings.kafka_ssl_check_hostname,
    )


class AccessWatch:
    """The client's error callback: logs what librdkafka reports, keeps the first refusal of access."""

    def __init__(self, settings: KafkaSettings, role: str) -> None:
        self.settings = settings
        self.role = role
        self.refused: KafkaAccessError | None = None
        self.seen = threading.Event()

    def __call__(self, error: KafkaError) -> None:
        if error.code() in ACCESS_ERRORS or refused_at_tls(error):
            if self.refused is None:
                self.refused = KafkaAccessError(explain(self.settings, error))
                log.error("%s: %s", self.role, self.refused)
            self.seen.set()
        elif error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            log.debug("%s: %s", self.role, error.str())
        else:
            log.warning("%s: %s: %s", self.role, error.name(), error.str())


def refused_at_tls(error: KafkaError) -> bool:
    """A connection lost in the TLS handshake for a reason retrying cannot mend (librdkafka says _TRANSPORT)."""
    lowered = error.str().lower()
    return error.code() == KafkaError._TRANSPORT and (
        "bad certificate" in lowered or "certificate required" in lowered or "plaintext broker listener" in lowered
    )


def explain(settings: KafkaSettings, error: KafkaError) -> str:
    """What librdkafka's report means for these settings, in the same words as the kafka-python transport's."""
    text = error.str()
    lowered = text.lower()
    if "mechanism" in lowered and ("unsupported" in lowered or "not enabled" in lowered):
        enabled = (
            lowered.split("supported mechanisms: ", 1)[-1].split(")")[0] if "supported mechanisms: " in lowered else ""
        )
        names = [m.strip().upper() for m in enabled.split(",") if m.strip()] or None
        return refusals.mechanism_not_enabled(settings, names)
    if error.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED) and "sasl" in lowered:
        return refusals.login_refused(settings, text.split("SASL authentication error: ", 1)[-1])
    if "certificate verify failed" in lowered:
        detail = text.split("certificate verify failed", 1)[-1].lstrip(": ").split(": ")[0]
        if "hostname" in lowered or "mismatch" in lowered or "match" in lowered:
            return refusals.certificate_names_other_host(settings, detail)
        return refusals.certificate_not_trusted(settings, detail)
    if "certificate required" in lowered or "bad certificate" in lowered or "handshake failure" in lowered:
        return refusals.client_certificate_refused(settings)
    if any(sign in lowered for sign in ("wrong version number", "unexpected eof", "plaintext broker listener")):
        return refusals.tls_hung_up(settings)
    return f"Kafka at {settings.kafka_bootstrap_servers} refused the connection: {error.name()}: {text}"
