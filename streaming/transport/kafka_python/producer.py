"""kafka-python's ``KafkaProducer`` behind the transport's ``Producer``: sends, their deliveries, a bounded close."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from streaming.transport.kafka_python.errors import translate, translated


class FutureDelivery:
    """The acknowledgements of a batch's sends, from kafka-python's futures."""

    def __init__(self, futures: list[Any]) -> None:
        self.futures = futures

    def done(self) -> bool:
        return all(f.is_done for f in self.futures)

    def error(self) -> BaseException | None:
        failed = next((f.exception for f in self.futures if f.failed()), None)
        return None if failed is None else translate(failed)

    def failures(self) -> int:
        return sum(1 for f in self.futures if f.is_done and f.failed())

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every future; their outcome is read by ``error``."""
        deadline = time.monotonic() + timeout
        for future in self.futures:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if not future.is_done:
                with contextlib.suppress(KafkaError):  # failed or not yet done: ``error`` reads the future
                    future.get(timeout=remaining)

    def __add__(self, other: FutureDelivery) -> FutureDelivery:
        return FutureDelivery(self.futures + other.futures)


class Producer:
    """One ``KafkaProducer``; ``send`` returns its future, ``delivery`` gathers futures into a batch outcome."""

    def __init__(self, producer: KafkaProducer) -> None:
        self.client = producer

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> Any:
        try:
            return self.client.send(topic, key=key, value=value, headers=headers, partition=partition)
        except KafkaError as exc:  # refused before it left: an ACL, a full buffer, no metadata in time
            raise translate(exc) from exc

    def delivery(self, sent: list[Any]) -> FutureDelivery:
        return FutureDelivery(sent)

    @translated
    def partitions_for(self, topic: str) -> set[int]:
        return set(self.client.partitions_for(topic) or ())

    @translated
    def flush(self, timeout: float | None = None) -> None:
        self.client.flush(timeout=timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Close within ``timeout`` seconds, dropping what could not be sent; False if anything was dropped.

        kafka-python 3.0's ``close`` flushes first and, when that times out, raises and leaves its
        sender thread running with the unsent records. Those records belong to batches the stream
        has already given up on (they will be read again), so the sender is stopped as ``close``
        would have stopped it, and the producer is marked closed.
        """
        try:
            self.client.close(timeout=timeout)
            return True
        except KafkaTimeoutError:
            sender = getattr(self.client, "_sender", None)
            if sender is not None:
                sender.force_close()
            self.client._closed = True  # what close() sets last; keeps its finalizer from flushing again
            return False
