"""confluent-kafka's ``Producer`` behind the transport's ``Producer``: sends, their deliveries, a bounded close.

librdkafka reports each delivery on a callback served only inside ``poll``/``flush``; a send
returns an ``Ack`` the callback fills, and a batch's ``AckDelivery`` serves pending callbacks
(``poll(0)``) whenever it is asked whether it is done, so the stream's loop needs no thread of its
own for them.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as RdKafkaProducer

from streaming.transport.base import TransportError, TransportTimeout
from streaming.transport.confluent.errors import error_of, from_error, translate, translated

METADATA_TIMEOUT_S = 10.0
FULL_QUEUE_WAIT_S = 0.05  # a full local queue: serve deliveries this long, then send again
MAX_BLOCK_S = 60.0  # the longest a send waits for room in the local queue (kafka-python's max_block_ms)


class Ack:
    """One send's outcome, filled by librdkafka's delivery callback."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = False
        self.error: KafkaError | None = None

    def __call__(self, error: KafkaError | None, _message: Any) -> None:
        self.error = error
        self.done = True


class AckDelivery:
    """The acknowledgements of a batch's sends; asking serves the producer's pending callbacks."""

    def __init__(self, producer: RdKafkaProducer, acks: list[Ack]) -> None:
        self.producer = producer
        self.acks = acks
        self._pending = len(acks)

    @translated
    def done(self) -> bool:
        if self._pending:
            self.producer.poll(0)
            self._pending = sum(1 for a in self.acks if not a.done)
        return not self._pending

    def error(self) -> BaseException | None:
        failed = next((a.error for a in self.acks if a.error is not None), None)
        return None if failed is None else from_error(failed)

    def failures(self) -> int:
        return sum(1 for a in self.acks if a.error is not None)

    @translated
    def wait(self, timeout: float) -> None:
        """Serve callbacks until every send has its outcome or ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        while not self.done() and (left := deadline - time.monotonic()) > 0:
            self.producer.poll(min(left, 0.1))

    def __add__(self, other: AckDelivery) -> AckDelivery:
        return AckDelivery(self.producer, self.acks + other.acks)


def _any(headers: list[tuple[str, bytes]] | None) -> Any:
    """Headers as given: librdkafka takes the (name, bytes) list as it is (its stubs type the list invariantly)."""
    return headers


class Producer:
    """One librdkafka producer; ``send`` returns its ``Ack``, ``delivery`` gathers them into a batch outcome."""

    @translated
    def __init__(self, config: dict[str, Any]) -> None:
        self.client = RdKafkaProducer(config)
        self.log = config.get("logger")  # a ClientLog: why a fatal error happened

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> Ack:
        ack = Ack()
        deadline = None
        while True:
            try:
                self.client.produce(
                    topic, value, key, -1 if partition is None else partition, on_delivery=ack, headers=_any(headers)
                )
                return ack
            except BufferError as exc:  # the local queue is full: let deliveries drain it
                deadline = deadline or time.monotonic() + MAX_BLOCK_S
                if time.monotonic() > deadline:
                    raise TransportTimeout(
                        f"no room in the producer's queue for {MAX_BLOCK_S:.0f} s", cause=exc
                    ) from exc
                self.client.poll(FULL_QUEUE_WAIT_S)
            except KafkaException as exc:  # refused before it left: an ACL already known, an unknown topic
                raise self._explained(exc) from exc

    def _explained(self, exc: KafkaException) -> BaseException:
        """The error, with a fatal one's reason (which librdkafka gives only in its log)."""
        error = error_of(exc)
        if error is not None and error.code() == KafkaError._FATAL:
            with contextlib.suppress(KafkaException):
                self.client.poll(0)  # serves the log, where librdkafka says why
        reason = getattr(self.log, "fatal", None)
        if error is not None and error.code() == KafkaError._FATAL and reason:
            return from_error(KafkaError(KafkaError._FATAL, f"{error.str()}: {reason}"), exc)
        return translate(exc)

    def delivery(self, sent: list[Any]) -> AckDelivery:
        return AckDelivery(self.client, sent)

    @translated
    def partitions_for(self, topic: str) -> set[int]:
        metadata = self.client.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return set()
        return set(metadata.partitions)

    @translated
    def flush(self, timeout: float | None = None) -> None:
        left = self.client.flush(-1 if timeout is None else timeout)
        if left:
            raise TransportError(f"{left} messages still unsent after {timeout} s", retriable=True)

    def close(self, timeout: float = 10.0) -> bool:
        """Send what is queued within ``timeout`` seconds; what is left is purged. False if anything was.

        A producer that failed for good (a fatal transaction error) raises on flush: nothing more of
        it can be sent, and what it held is dropped with it.
        """
        try:
            left = self.client.flush(timeout)
            if left:
                self.client.purge()
                self.client.flush(0)
        except KafkaException:
            return False
        return not left
