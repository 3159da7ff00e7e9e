"""The stream consumer's readiness: a model, partitions, a broker that answers, results acknowledged.

``/readyz`` shows each check with its reason. The broker is asked for end offsets every few
seconds: an answer proves it is reachable and gives the consumer lag per partition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from monitoring.health import Health
from monitoring.metrics import ScoringMetrics
from streaming.transport.base import Consumer, TransportError

BROKER_CHECK_S = 5.0  # how often end offsets are asked for (consumer lag, broker reachability)


class StreamReadiness:
    """What ``/readyz`` reports for one consumer, fed by its loop."""

    def __init__(self, health: Health, brokers: str, model_version: Callable[[], int | None]) -> None:
        self.brokers = brokers
        self.assigned = 0
        self.send_error: str | None = None
        self._checked: float | None = None
        self._broker_error: str | None = "not checked yet"
        health.add_check("model", lambda: None if model_version() is not None else "no model loaded")
        health.add_check("partitions", lambda: None if self.assigned else "no partitions assigned (joining the group?)")
        health.add_check("broker", self._broker_reason)
        health.add_check("results", lambda: self.send_error)

    def due(self) -> bool:
        """Whether the broker should be asked again (every ``BROKER_CHECK_S``)."""
        return self._checked is None or time.monotonic() - self._checked >= BROKER_CHECK_S

    def check_broker(
        self, consumer: Consumer, positions: Mapping[tuple[str, int], int], metrics: ScoringMetrics
    ) -> bool:
        """Ask for the assigned partitions' end offsets; set the lag. True if the broker answered."""
        assigned = list(consumer.assignment())
        if not assigned:
            return False
        now = time.monotonic()
        try:
            ends = consumer.end_offsets(assigned, timeout_ms=2000)
        except TransportError as exc:
            self._broker_error = str(exc)
            self._checked = now
            return False
        self._broker_error = None
        self._checked = now
        metrics.lag.clear()  # partitions that moved to another member stop being reported
        for tp, end in ends.items():
            done = positions.get(tp)
            if done is not None:
                metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, end - done))
        return True

    def broker_unreachable(self, exc: BaseException) -> None:
        """The client could not reach any broker (seen by a poll): not ready until an answer comes."""
        self._broker_error = str(exc) if isinstance(exc, TransportError) else f"{type(exc).__name__}: {exc}"

    def _broker_reason(self) -> str | None:
        if self._broker_error is not None:
            return f"broker {self.brokers}: {self._broker_error}"
        if self._checked is None or time.monotonic() - self._checked > 3 * BROKER_CHECK_S + 10:
            return "broker not answered recently"
        return None
