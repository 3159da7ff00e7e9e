"""The server's scoring exchanges on a Kafka topic, through the stream's transport and security settings.

KServe's request logger posts payloads to an HTTP sink; here they go to Kafka, where the rest of
the loop already reads, with the same client factory, TLS/SASL settings and properties file as the
stream. One message per exchange, keyed by its request id: a JSON object with the time, route,
status, model version, arm, duration, and the request and response bodies (as JSON when they are,
else as text; both left out, and their sizes said, when the message would pass ``max_bytes``).

Off the request path: ``offer`` puts the exchange on a bounded queue and one thread sends. When
Kafka is away the queue holds what arrives, up to ``capacity``; past that, exchanges are counted
``dropped`` (``scorepipe_payload_log_entries_total``) rather than delaying an answer.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import Any

import orjson

from monitoring.metrics import ScoringMetrics
from monitoring.payload import Exchange
from scoring import ScoringError
from streaming.settings import StreamSettings
from streaming.topics import ensure_topics
from streaming.transport import transport_for
from streaming.transport.base import Producer, TransportError

log = logging.getLogger("scorepipe.payload_log")
RECONNECT_S = 5.0
SEND_BATCH = 500
DELIVERY_TIMEOUT_S = 30.0
_CLOSING = None  # put on the queue by close: send what came before it, then stop


class KafkaPayloadLog:
    """A ``monitoring.payload.PayloadLog`` writing to ``topic``."""

    def __init__(
        self,
        settings: StreamSettings,
        topic: str,
        metrics: ScoringMetrics,
        *,
        capacity: int = 10_000,
        max_bytes: int = 900_000,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.metrics = metrics
        self.max_bytes = max_bytes
        self._queue: queue.Queue[Exchange | None] = queue.Queue(maxsize=capacity)
        self._closing = threading.Event()
        self._warned_full = float("-inf")
        self._thread = threading.Thread(target=self._run, name="payload-log", daemon=True)
        self._thread.start()

    def offer(self, exchange: Exchange) -> None:
        """Queued for sending; never blocks (a full queue drops it, counted and logged)."""
        try:
            self._queue.put_nowait(exchange)
        except queue.Full:
            self.metrics.payload_log.labels("dropped").inc()
            if time.monotonic() - self._warned_full > 10:
                self._warned_full = time.monotonic()
                log.warning("payload log: %d exchanges waiting for Kafka; dropping new ones", self._queue.qsize())

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (within ``timeout``), then stop; what could not be sent is counted and logged."""
        self._closing.set()
        with contextlib.suppress(queue.Full):  # a queue full for that long: the thread counts what it leaves
            self._queue.put(_CLOSING, timeout=timeout)
        self._thread.join(timeout)

    # -- the sending thread ----------------------------------------------------------------

    def _run(self) -> None:
        producer = self._connect()
        try:
            while producer is not None:
                batch, closing = self._take()
                if batch:
                    self._send(producer, batch)
                if closing:
                    return
        finally:
            unsent = sum(1 for item in self._drain() if item is not None)
            if unsent:
                self.metrics.payload_log.labels("failed").inc(unsent)
                log.error("payload log: %d exchanges not sent to %s before the server stopped", unsent, self.topic)
            if producer is not None:
                producer.close(timeout=5)

    def _connect(self) -> Producer | None:
        """A producer, once Kafka answers (retrying until the log closes); the topic made if missing."""
        while not self._closing.is_set():
            try:
                ensure_topics(self.settings, self.topic)
                return transport_for(self.settings).producer(self.settings, linger_ms=50)
            except (ScoringError, TransportError) as exc:
                log.error("payload log: cannot write to %s (%s); retrying in %.0f s", self.topic, exc, RECONNECT_S)
                self._closing.wait(RECONNECT_S)
        return None

    def _take(self) -> tuple[list[Exchange], bool]:
        """Up to a batch of what is queued (waiting half a second for the first), and whether closing was asked."""
        batch: list[Exchange] = []
        try:
            item = self._queue.get(timeout=0.5)
        except queue.Empty:
            return batch, self._closing.is_set() and self._queue.empty()
        while item is not None:
            batch.append(item)
            if len(batch) >= SEND_BATCH:
                return batch, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, True

    def _drain(self) -> list[Exchange | None]:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _send(self, producer: Producer, batch: list[Exchange]) -> None:
        """One batch sent and waited for; each exchange counted sent or failed (unacknowledged in time: failed)."""
        try:
            sent = [
                producer.send(self.topic, self.encode(e), key=e.request_id.encode(), headers=_headers(e)) for e in batch
            ]
            delivery = producer.delivery(sent)
            delivery.wait(DELIVERY_TIMEOUT_S)
            failed = delivery.failures() if delivery.done() else len(batch)
            if failed:
                log.error("payload log: %d of %d exchanges not acknowledged: %s", failed, len(batch), delivery.error())
        except TransportError as exc:
            log.error("payload log: sending %d exchanges to %s failed: %s", len(batch), self.topic, exc)
            failed = len(batch)
        self.metrics.payload_log.labels("sent").inc(len(batch) - failed)
        if failed:
            self.metrics.payload_log.labels("failed").inc(failed)

    def encode(self, exchange: Exchange) -> bytes:
        entry: dict[str, Any] = {
            "request_id": exchange.request_id,
            "time": exchange.time,
            "method": exchange.method,
            "path": exchange.path,
            "status": exchange.status,
            "model_version": exchange.model_version,
            "arm": exchange.arm,
            "seconds": round(exchange.seconds, 6),
            "request": _body(exchange.request),
            "response": _body(exchange.response),
        }
        value = orjson.dumps(entry)
        if len(value) > self.max_bytes:
            entry["request"] = entry["response"] = None
            entry["omitted"] = (
                f"bodies of {len(exchange.request)} and {len(exchange.response)} bytes: the message would pass "
                f"{self.max_bytes} bytes"
            )
            value = orjson.dumps(entry)
        return value


def _body(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")


def _headers(exchange: Exchange) -> list[tuple[str, bytes]]:
    return [
        ("content-type", b"application/json"),
        ("model-version", exchange.model_version.encode()),
        ("arm", exchange.arm.encode()),
    ]
