"""The one Kafka client factory: every consumer, producer and admin client of scorepipe is built here.

Connection settings (brokers, timeouts, and anything a secured cluster needs later) come from one
``StreamSettings`` object, so they reach every client at once: the stream's consumer and producer, the
demo producer, the label sink, topic creation, ``scorepipe status``, the demo and the benchmarks.
Callers pass only what is particular to their use (group, batch sizes, acks).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from streaming.oauth import token_provider
from streaming.preflight import ensure_access
from streaming.settings import KafkaSettings, StreamSettings

log = logging.getLogger("scorepipe.stream")
T = TypeVar("T")


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


def kafka_consumer(settings: KafkaSettings, *topics: str, **options: Any) -> KafkaConsumer:
    """A consumer of ``topics`` (or none, for ``assign``) with the settings' connection options."""
    return KafkaConsumer(*topics, **checked_options(settings), **options)


def kafka_producer(settings: KafkaSettings, **options: Any) -> KafkaProducer:
    """A producer with the settings' connection options."""
    return KafkaProducer(**checked_options(settings), **options)


def kafka_admin(settings: KafkaSettings, **options: Any) -> KafkaAdminClient:
    """An admin client with the settings' connection options."""
    return KafkaAdminClient(**checked_options(settings), **options)


def stream_consumer(settings: StreamSettings, client_id: str) -> KafkaConsumer:
    """The stream's group member: manual commits, micro-batch sized polls, the settings' session timeout."""
    return kafka_consumer(
        settings,
        group_id=settings.consumer_group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.stream_batch_events,
        fetch_max_wait_ms=min(settings.stream_batch_ms, 500),
        session_timeout_ms=settings.stream_session_timeout_ms,
        heartbeat_interval_ms=max(1000, settings.stream_session_timeout_ms // 4),
        max_poll_interval_ms=300_000,
        # exactly once: an input written in transactions is read only once they commit
        isolation_level="read_committed" if settings.stream_guarantee == "exactly-once" else "read_uncommitted",
    )


def stream_producer(settings: StreamSettings, client_id: str, **options: Any) -> KafkaProducer:
    """The stream's results producer: acknowledged by all replicas, retried up to the delivery timeout."""
    return kafka_producer(
        settings,
        client_id=f"{client_id}-producer",
        acks="all",
        linger_ms=2,
        batch_size=256 * 1024,
        delivery_timeout_ms=settings.stream_delivery_timeout_ms,
        request_timeout_ms=min(30_000, settings.stream_delivery_timeout_ms - 2),
        **options,
    )


def rebuild_until_stopped(build: Callable[[], T], *, stopping: threading.Event, max_delay: float, what: str) -> T:
    """``build()`` again and again, with back-off up to ``max_delay``, while no broker answers.

    A long-running stream outlives an outage instead of dying on it; only a stop ends the
    retries, with the client's error.
    """
    delay = 0.5
    while True:
        try:
            return build()
        except KafkaError as exc:
            if stopping.is_set():
                raise
            log.error("cannot %s (%s); retrying in %.1f s", what, exc, delay)
            stopping.wait(delay)
            delay = min(delay * 2, max_delay)


def close_producer(producer: KafkaProducer, timeout: float) -> bool:
    """Close ``producer`` within ``timeout`` seconds, dropping what it could not send; False if it dropped any.

    kafka-python 3.0's ``close`` flushes first and, when that times out, raises and leaves its
    sender thread running with the unsent records. Those records belong to batches the ledger
    has already given up on (they will be read again), so the sender is stopped as ``close``
    would have stopped it, and the producer is marked closed.
    """
    try:
        producer.close(timeout=timeout)
        return True
    except KafkaTimeoutError:
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        producer._closed = True  # what close() sets last; keeps its finalizer from flushing again
        return False
