"""The exactly-once stream's transactional producer on librdkafka: begin, commit with offsets, abort, bounded.

librdkafka's transactional API takes a timeout on every step, so nothing here waits unbounded.
Its errors say what to do: retriable (the step may be tried again), requiring an abort, or fatal
(the producer cannot go on: fenced by a newer one with the same transactional id, say). A step
that times out, or a fatal error, counts as ``TransactionStuck``/``ProducerFenced``: the stream
replaces the producer, and registering the new one aborts what the old one left open.

One bound is kept here by hand: librdkafka's ``send_offsets_to_transaction`` can wait past its
timeout, for ever, when the group coordinator it cached went away (a broker restarted:
librdkafka issues #5456 and #5511, open). Each step therefore runs on a thread of its own and is
given up on after its timeout and a grace; the producer is then replaced, and the abandoned one
is left to the thread still inside it (closing a client another thread is inside would crash).

The transactional id is the group and the member's client id, as on the kafka-python transport.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from streaming.settings import StreamSettings
from streaming.transport.base import Consumer, ProducerFenced, TopicPartition, TransactionStuck, TransportError
from streaming.transport.confluent.consumer import to_commit
from streaming.transport.confluent.errors import error_of, from_error
from streaming.transport.confluent.producer import Producer
from streaming.transport.transactional import TransactionalProducer

log = logging.getLogger("scorepipe.stream")
REGISTRATION_MIN_S = 30.0  # the least time a transactional id is given to register
GRACE_S = 2.0  # past a step's own timeout, how long librdkafka is given to return before it is given up on


class Transactions(TransactionalProducer[Producer]):
    """librdkafka's transactional producer, each step bounded on a thread of its own."""

    def __init__(
        self,
        settings: StreamSettings,
        client_id: str,
        stopping: threading.Event | None,
        new_producer: Callable[..., Producer],
    ) -> None:
        self.timeout_s = settings.stream_transaction_timeout_ms / 1000
        self._abandoned = False  # a step never returned: the producer is left to the thread inside it
        super().__init__(settings, client_id, stopping, new_producer)

    def _new_producer(self) -> Producer:
        transaction_timeout_ms = max(60_000, 2 * self.settings.stream_transaction_timeout_ms)
        producer = self._build(
            **{
                "transactional.id": self.transactional_id,
                "transaction.timeout.ms": transaction_timeout_ms,
                # librdkafka refuses a message timeout longer than the transaction's
                "delivery.timeout.ms": min(self.settings.stream_delivery_timeout_ms, transaction_timeout_ms),
            }
        )
        # Registering aborts what a previous life left open; on a busy machine or a broker that just
        # started it may take longer than one step's bound, so it is given at least REGISTRATION_MIN_S.
        deadline = time.monotonic() + max(self.timeout_s, REGISTRATION_MIN_S)
        while True:
            try:
                producer.client.init_transactions(self.timeout_s)
                return producer
            except KafkaException as exc:
                error = error_of(exc)
                retry = error is not None and error.retriable() and time.monotonic() < deadline
                if retry and not self._stopping.is_set():
                    continue
                producer.close(timeout=0)
                raise self._translated(exc, "registering") from exc

    def begin(self) -> None:
        if not self.open:
            try:
                self.producer.client.begin_transaction()
            except KafkaException as exc:
                raise self._translated(exc, "begin") from exc
            self.open = True

    def commit(self, offsets: Mapping[TopicPartition, int], consumer: Consumer) -> None:
        """Add the input ``offsets`` to the transaction and commit it; raises if either step fails."""
        client = self.producer.client
        try:
            if offsets:
                group = consumer.group_metadata()
                self._bounded("adding offsets", client.send_offsets_to_transaction, to_commit(offsets), group)
            self._bounded("commit", client.commit_transaction)
        except KafkaException as exc:
            raise self._translated(exc, "commit") from exc
        self.open = False
        self.commits += 1

    def abort(self) -> None:
        """Abort the open transaction; after a fatal error or a stuck abort, start a new producer instead."""
        self.aborts += 1
        try:
            self._bounded("abort", self.producer.client.abort_transaction)
        except KafkaException as exc:
            log.warning("abort failed (%s): replacing the transactional producer", self._translated(exc, "abort"))
            self.replace()
        except TransactionStuck as exc:
            log.warning("%s: replacing the transactional producer", exc)
            self.replace()
        self.open = False

    def _retire(self) -> None:
        """Closed at once, unless a step never returned: that producer is left to the thread inside it."""
        if not self._abandoned:
            super()._retire()
        self._abandoned = False

    def _bounded(self, what: str, step: Callable[..., Any], *args: Any) -> Any:
        """``step(*args, timeout)`` on a thread of its own; ``TransactionStuck`` if it does not return in time."""
        finished = threading.Event()
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["value"] = step(*args, self.timeout_s)
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller as it was raised
                outcome["error"] = exc
            finally:
                finished.set()

        threading.Thread(target=run, name=f"transaction-{what}", daemon=True).start()
        if not finished.wait(self.timeout_s + GRACE_S):
            self._abandoned = True
            raise TransactionStuck(
                f"transaction {what} had no outcome within {self.settings.stream_transaction_timeout_ms} ms"
            )
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    def _translated(self, exc: KafkaException, what: str) -> TransportError:
        """A timed-out step is stuck and a fatal error fences the producer: both replace it; the rest abort."""
        error = error_of(exc)
        if error is None:
            return TransportError(f"transaction {what}: {exc}", cause=exc)
        if error.code() == KafkaError._TIMED_OUT:
            return TransactionStuck(
                f"transaction {what} had no outcome within {self.settings.stream_transaction_timeout_ms} ms", cause=exc
            )
        if error.fatal():
            return ProducerFenced(f"{error.name()}: {error.str()}", cause=exc)
        return from_error(error, exc)
