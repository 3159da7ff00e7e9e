"""confluent-kafka's errors, translated into the transport's (``streaming.transport.base``).

librdkafka reports every failure as a ``KafkaError`` code, raised inside a ``KafkaException`` or
handed to a callback; each adapter of this transport translates it at the call, so code outside
the boundary never names a confluent-kafka class. The message keeps librdkafka's code name and
text (``TOPIC_AUTHORIZATION_FAILED: Broker: Topic authorization failed``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from confluent_kafka import KafkaError, KafkaException

from streaming.transport.base import NotAuthorized, ProducerFenced, TransportError, TransportTimeout

P = ParamSpec("P")
R = TypeVar("R")

NOT_AUTHORIZED = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "group",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional_id",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
}
FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
TIMED_OUT = {KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT, KafkaError._MSG_TIMED_OUT}
# Retriable by Kafka's protocol, though a librdkafka error taken from an admin or commit answer may
# not carry the flag: a coordinator or leader moving or loading, a broker away.
RETRIABLE = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.REBALANCE_IN_PROGRESS,
}


def error_of(exc: BaseException) -> KafkaError | None:
    """The ``KafkaError`` a ``KafkaException`` carries (None for anything else)."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def from_error(error: KafkaError, cause: BaseException | None = None) -> TransportError:
    """The transport's error for a librdkafka error code."""
    message = f"{error.name()}: {error.str()}"
    code = error.code()
    if code in FENCED:
        return ProducerFenced(message, cause=cause)
    if code in NOT_AUTHORIZED:
        return NotAuthorized(message, resource=NOT_AUTHORIZED[code], cause=cause)
    if code == KafkaError._FATAL and "authorization failed" in message.lower():
        # An idempotent producer refused its producer id (no WRITE anywhere yet) stops for good in
        # librdkafka: refused as an ACL refusal, so the stream replaces it and tries again.
        return NotAuthorized(message, resource="cluster", cause=cause)
    if code == KafkaError._FATAL:
        return TransportError(message, retriable=False, cause=cause)
    if code in TIMED_OUT:
        return TransportTimeout(message, cause=cause)
    return TransportError(message, retriable=bool(error.retriable()) or code in RETRIABLE, cause=cause)


def translate(exc: BaseException) -> BaseException:
    """The transport's error for a confluent-kafka one; others as they are."""
    if isinstance(exc, TransportError):
        return exc
    error = error_of(exc)
    if error is not None:
        return from_error(error, exc)
    if isinstance(exc, BufferError):  # the producer's local queue is full: retry once it drains
        return TransportError(f"BufferError: {exc}", retriable=True, cause=exc)
    return exc


def translated(call: Callable[P, R]) -> Callable[P, R]:
    """``call``, raising the transport's errors instead of confluent-kafka's."""

    @functools.wraps(call)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return call(*args, **kwargs)
        except (KafkaException, BufferError) as exc:
            raise translate(exc) from exc

    return wrapper
