"""What both transports' transactional producers share: identity, counters, replacing the producer, closing.

Each transport implements the steps on its library (``_new_producer`` registers the transactional
id; ``begin``, ``commit``, ``abort``); replacing a producer that cannot go on, and closing, are the
same on both.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from streaming.reconnect import rebuild_until_stopped
from streaming.settings import StreamSettings
from streaming.transport.base import Producer, TransportError

log = logging.getLogger("scorepipe.stream")
ProducerT = TypeVar("ProducerT", bound=Producer)


class TransactionalProducer(Generic[ProducerT]):
    """One open transaction at a time on one transactional producer, replaced after a fatal error.

    The transactional id is the group and the member's client id: stable across restarts, so a
    restarted member's registration aborts whatever its previous life left open.
    """

    def __init__(
        self,
        settings: StreamSettings,
        client_id: str,
        stopping: threading.Event | None,
        new_producer: Callable[..., ProducerT],
    ) -> None:
        self.settings = settings
        self._stopping = stopping or threading.Event()
        self._build = new_producer
        self.client_id = client_id
        self.transactional_id = f"{settings.consumer_group}.{client_id}"
        self.open = False
        self.commits = 0
        self.aborts = 0
        self.producer: ProducerT = self._new_producer()

    def _new_producer(self) -> ProducerT:
        """A producer of the transactional id, registered (which aborts what an earlier one left open)."""
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def _retire(self) -> None:
        """The producer being replaced, closed at once: its successor's registration aborts what it left open."""
        self.producer.close(timeout=0)

    def replace(self) -> None:
        """A new producer with the same transactional id: registering it aborts what the old one left open.

        While no broker answers, registering is retried with back-off (a stream outlives an outage);
        only a stop ends the retries, with the error.
        """
        self._retire()
        self.open = False
        self.producer = rebuild_until_stopped(
            self._new_producer,
            stopping=self._stopping,
            max_delay=self.settings.stream_retry_max_seconds,
            what=f"register transactional id {self.transactional_id}",
        )

    def close(self, timeout: float) -> bool:
        """Abort what is open (its offsets are not committed: it is read again) and close the producer."""
        if self.open:
            try:
                self.abort()
            except TransportError as exc:
                log.warning("could not abort on close (%s): the broker aborts it after its timeout", exc)
        return self.producer.close(timeout=timeout)
