"""Polling that outlives the broker: what the stream's loop and the label sink share.

A client's ``poll`` raises connection errors (from its group coordinator, say) while every broker
is down; nothing was fetched then, so nothing is skipped by returning no records and trying again
(with a doubling wait, logged every ``UNREACHABLE_LOG_S``). An ACL that refuses the read is the
one error raised, as a ``KafkaAccessError`` naming the topic or group and the principal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from streaming.errors import KafkaAccessError
from streaming.refusals import read_refusal
from streaming.settings import StreamSettings
from streaming.transport.base import Consumer, NotAuthorized, Record, TransportError

log = logging.getLogger("scorepipe.stream")
UNREACHABLE_LOG_S = 10.0  # while no broker answers: how often that is logged
MAX_BACKOFF_S = 1.0


class Poller:
    """Polls ``consumer`` (subscribed to ``topic``) into a flat list of records, riding out broker outages."""

    def __init__(
        self,
        consumer: Consumer,
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

    def poll(self, timeout_ms: int, limit: int | None = None) -> list[Record]:
        """What the client has buffered (at most ``limit``); nothing while no broker answers."""
        try:
            polled = self.consumer.poll(timeout_ms, limit)
        except NotAuthorized as exc:
            raise KafkaAccessError(read_refusal(self.settings, exc)) from None
        except TransportError as exc:
            if not exc.retriable:
                raise
            self._unreachable(exc)
            return []
        self._backoff = 0.0
        if not polled and not self.consumer.assignment():
            self._raise_if_refused()
        return polled

    def _unreachable(self, exc: TransportError) -> None:
        self._on_unreachable(exc)
        now = time.monotonic()
        if now - self._logged >= UNREACHABLE_LOG_S:
            log.warning("broker %s unreachable (%s); retrying", self.settings.kafka_bootstrap_servers, exc)
            self._logged = now
        self._backoff = min(max(0.05, self._backoff * 2), MAX_BACKOFF_S)
        self._stopping.wait(self._backoff)

    def _raise_if_refused(self) -> None:
        """A subscribed topic the ACLs hide may only be logged by the client, which then waits with no partitions."""
        if self.topic in self.consumer.refused_topics():
            refused = NotAuthorized(f"TopicAuthorizationFailedError: {self.topic}", resource="topic")
            raise KafkaAccessError(read_refusal(self.settings, refused))
