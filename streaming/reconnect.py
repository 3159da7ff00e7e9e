"""Building a client again and again while no broker answers: a long-running stream outlives an outage."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from streaming.transport.base import TransportError

log = logging.getLogger("scorepipe.stream")
T = TypeVar("T")


def rebuild_until_stopped(build: Callable[[], T], *, stopping: threading.Event, max_delay: float, what: str) -> T:
    """``build()`` again and again, with back-off up to ``max_delay``, while no broker answers.

    Only a stop ends the retries, with the client's error.
    """
    delay = 0.5
    while True:
        try:
            return build()
        except TransportError as exc:
            if stopping.is_set():
                raise
            log.error("cannot %s (%s); retrying in %.1f s", what, exc, delay)
            stopping.wait(delay)
            delay = min(delay * 2, max_delay)
