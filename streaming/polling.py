"""Polling that outlives the broker: what the stream's loop and the label sink share.

kafka-python's ``poll`` raises connection errors from its group coordinator while every broker
is down; nothing was fetched then, so nothing is skipped by returning no records and trying again
(with a doubling wait, logged every ``UNREACHABLE_LOG_S``). An ACL that refuses the read is the
one error raised, as a ``KafkaAccessError`` naming the topic or group and the principal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka.errors import AuthorizationError, KafkaError, TopicAuthorizationFailedError

from streaming.errors import KafkaAccessError
from streaming.refusals import read_refusal
from streaming.settings import StreamSettings

log = logging.getLogger("scorepipe.stream")
UNREACHABLE_LOG_S = 10.0  # while no broker answers: how often that is logged
MAX_BACKOFF_S = 1.0


class Poller:
    """Polls ``consumer`` (subscribed to ``topic``) into a flat list of records, riding out broker outages."""

    def __init__(
        self,
        consumer: Any,
        settings: StreamSettings,
        topic: str,
        stopping: threading.Event,
        *,
        on_unreachable: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self.consumer = consumer
        self.settings = settings
        self.topic = topic
        self._stopping = stopping
        self._on_unreachable = on_unreachable
        self._backoff = 0.0
        self._logged = float("-inf")

    def poll(self, timeout_ms: int, limit: int | None = None) -> list[Any]:
        """What the client has buffered (at most ``limit``); nothing while no broker answers."""
        try:
            polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=limit)
        except AuthorizationError as exc:
            raise KafkaAccessError(read_refusal(self.settings, exc)) from None
        except KafkaError as exc:
            if not exc.retriable:
                raise
            self._unreachable(exc)
            return []
        self._backoff = 0.0
        if not polled and not self.consumer.assignment():
            self._raise_if_refused()
        return [record for records in polled.values() for record in records]

    def _unreachable(self, exc: KafkaError) -> None:
        self._on_unreachable(exc)
        now = time.monotonic()
        if now - self._logged >= UNREACHABLE_LOG_S:
            log.warning("broker %s unreachable (%s); retrying", self.settings.kafka_bootstrap_servers, exc)
            self._logged = now
        self._backoff = min(max(0.05, self._backoff * 2), MAX_BACKOFF_S)
        self._stopping.wait(self._backoff)

    def _raise_if_refused(self) -> None:
        """kafka-python only logs a subscribed topic the ACLs hide, and then waits with no partitions."""
        cluster = getattr(getattr(self.consumer, "_client", None), "cluster", None)
        if cluster is not None and self.topic in getattr(cluster, "unauthorized_topics", ()):
            raise KafkaAccessError(read_refusal(self.settings, TopicAuthorizationFailedError(self.topic)))
