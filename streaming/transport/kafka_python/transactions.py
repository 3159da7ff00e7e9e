"""The exactly-once stream's transactional producer on kafka-python: begin, commit with offsets, abort, bounded.

kafka-python's ``commit_transaction``, ``abort_transaction`` and ``send_offsets_to_transaction``
wait with no timeout; a broker that stops answering would hold the stream forever. The same
steps are taken here through the producer's transaction manager, whose results can be waited on
with a timeout (``stream_transaction_timeout_ms``); past it the transaction counts as failed
(``TransactionStuck``) and the producer is replaced, which aborts what it left open when the
new one registers the same transactional id.

The transactional id is the group and the member's client id: stable across restarts, so a
restarted member's ``init_transactions`` aborts whatever its previous life left open at once
(instead of after the broker's transaction timeout, while ``read_committed`` readers wait). Each
member of a group therefore needs its own ``--client-id``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kafka.errors import KafkaError, KafkaTimeoutError

from streaming.settings import StreamSettings
from streaming.transport.base import Consumer, TopicPartition, TransactionStuck, TransportError
from streaming.transport.kafka_python.consumer import to_commit
from streaming.transport.kafka_python.errors import translate
from streaming.transport.kafka_python.producer import Producer
from streaming.transport.transactional import TransactionalProducer

log = logging.getLogger("scorepipe.stream")
TRANSACTION_RETRY_BACKOFF_MS = 10
REGISTRATION_MIN_S = 30.0  # the least time a transactional id is given to register


class Transactions(TransactionalProducer[Producer]):
    """kafka-python's transactional producer, each step bounded through its transaction manager."""

    def __init__(
        self,
        settings: StreamSettings,
        client_id: str,
        stopping: threading.Event | None,
        new_producer: Callable[..., Producer],
    ) -> None:
        self.timeout_ms = settings.stream_transaction_timeout_ms
        super().__init__(settings, client_id, stopping, new_producer)

    def _new_producer(self) -> Producer:
        producer = self._build(
            transactional_id=self.transactional_id,
            max_block_ms=self.timeout_ms,
            transaction_timeout_ms=max(60_000, 2 * self.timeout_ms),
            # Right after a commit the coordinator answers CONCURRENT_TRANSACTIONS until its markers
            # are written; retried after the default 100 ms, that wait dominated every transaction.
            retry_backoff_ms=TRANSACTION_RETRY_BACKOFF_MS,
        )
        # Registering aborts what a previous life left open. It is set-up, not a transaction step: on a
        # busy machine or a broker that just started it may take longer than one step's bound, so it
        # is waited on for at least REGISTRATION_MIN_S (each init_transactions call waits max_block_ms
        # and a retry goes on waiting for the same request).
        deadline = time.monotonic() + max(self.timeout_ms / 1000, REGISTRATION_MIN_S)
        while True:
            try:
                producer.client.init_transactions()
                return producer
            except KafkaTimeoutError as exc:
                if time.monotonic() >= deadline or self._stopping.is_set():
                    producer.close(timeout=0)
                    raise translate(exc) from exc
            except KafkaError as exc:
                producer.close(timeout=0)
                raise translate(exc) from exc

    def begin(self) -> None:
        if not self.open:
            try:
                self.producer.client.begin_transaction()
            except KafkaError as exc:
                raise translate(exc) from exc
            self.open = True

    def commit(self, offsets: Mapping[TopicPartition, int], consumer: Consumer) -> None:
        """Add the input ``offsets`` to the transaction and commit it; raises if either step fails."""
        manager = self.producer.client._transaction_manager
        if offsets:
            group = consumer.group_metadata()
            self._wait(lambda: manager.send_offsets_to_transaction(to_commit(offsets), group), "adding offsets")
        self._wait(manager.begin_commit, "commit")
        self.open = False
        self.commits += 1

    def abort(self) -> None:
        """Abort the open transaction; after a fatal error or a stuck abort, start a new producer instead."""
        self.aborts += 1
        manager = self.producer.client._transaction_manager
        try:
            if manager.has_fatal_error():
                raise translate(manager.last_error or KafkaError("fatal transaction error"))
            self._wait(manager.begin_abort, "abort")
        except TransportError as exc:
            log.warning("abort failed (%s): replacing the transactional producer", exc)
            self.replace()
        self.open = False

    def _wait(self, start: Callable[[], Any], what: str) -> None:
        try:
            result = start()
            self.producer.client._sender.wakeup()
            answered = result.wait(timeout_ms=self.timeout_ms)  # raises the step's error, if it failed
        except KafkaError as exc:
            raise translate(exc) from exc
        if not answered:
            raise TransactionStuck(f"transaction {what} had no outcome within {self.timeout_ms} ms")
