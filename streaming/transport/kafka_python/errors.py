"""kafka-python's exceptions, translated into the transport's (``streaming.transport.base``).

Every adapter of this transport catches ``KafkaError`` at the call into the library and raises
what ``translate`` returns, so code outside the boundary never names a kafka-python class.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from kafka.errors import (
    AuthorizationError,
    GroupAuthorizationFailedError,
    InvalidProducerEpochError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFencedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
)

from streaming.transport.base import NotAuthorized, ProducerFenced, TransportError, TransportTimeout

P = ParamSpec("P")
R = TypeVar("R")
FENCED = (ProducerFencedError, InvalidProducerEpochError, TransactionalIdAuthorizationFailedError)


def translate(exc: BaseException) -> BaseException:
    """The transport's error for a kafka-python one (its class name kept in the message); others as they are."""
    if isinstance(exc, TransportError) or not isinstance(exc, KafkaError):
        return exc
    message = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, FENCED):
        return ProducerFenced(message, cause=exc)
    if isinstance(exc, AuthorizationError):
        return NotAuthorized(message, resource=_resource(exc), cause=exc)
    if isinstance(exc, KafkaTimeoutError):
        return TransportTimeout(message, cause=exc)
    return TransportError(message, retriable=bool(getattr(exc, "retriable", False)), cause=exc)


def _resource(exc: AuthorizationError) -> str:
    if isinstance(exc, TopicAuthorizationFailedError):
        return "topic"
    if isinstance(exc, GroupAuthorizationFailedError):
        return "group"
    if isinstance(exc, TransactionalIdAuthorizationFailedError):
        return "transactional_id"
    return "cluster"


def translated(call: Callable[P, R]) -> Callable[P, R]:
    """``call``, raising the transport's errors instead of kafka-python's."""

    @functools.wraps(call)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return call(*args, **kwargs)
        except KafkaError as exc:
            raise translate(exc) from exc

    return wrapper
