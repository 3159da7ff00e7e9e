"""Polling without a broker: an outage is waited out, a refused read is named."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from scorepipe.settings import Settings
from streaming.errors import KafkaAccessError
from streaming.polling import Poller
from streaming.transport.base import NotAuthorized, TransportError


class Consumer:
    def __init__(self, *outcomes, assigned=("features", 0), unauthorized=()) -> None:
        self.outcomes = list(outcomes)
        self.assigned = {assigned} if assigned else set()
        self.unauthorized = set(unauthorized)

    def refused_topics(self) -> set[str]:
        return self.unauthorized

    def poll(self, timeout_ms: int, max_records: int | None) -> list:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def assignment(self) -> set:
        return self.assigned


def poller(consumer: Consumer, seen: list | None = None) -> Poller:
    stopping = threading.Event()
    stopping.set()  # back-off waits return at once
    return Poller(consumer, Settings(), "features", stopping, on_unreachable=(seen if seen is not None else []).append)


def test_an_unreachable_broker_gives_no_records_and_is_reported_then_polling_goes_on():
    seen: list = []
    records = [SimpleNamespace(offset=1), SimpleNamespace(offset=2)]
    down = TransportError("KafkaConnectionError: down", retriable=True)
    consumer = Consumer(down, down, records)
    polling = poller(consumer, seen)
    assert polling.poll(10) == [] and polling.poll(10) == []
    assert len(seen) == 2 and polling._backoff > 0
    assert polling.poll(10) == records and polling._backoff == 0


def test_a_read_the_acls_refuse_is_named_not_waited_out():
    with pytest.raises(KafkaAccessError, match="READ for consumer group scorepipe"):
        poller(Consumer(NotAuthorized("GroupAuthorizationFailedError: no", resource="group"))).poll(10)


def test_a_topic_the_acls_hide_is_named_once_nothing_is_assigned():
    consumer = Consumer([], assigned=None, unauthorized=("features",))
    with pytest.raises(KafkaAccessError, match="READ on topic features"):
        poller(consumer).poll(10)


def test_an_error_that_retrying_cannot_mend_is_raised():
    with pytest.raises(TransportError, match="old broker"):
        poller(Consumer(TransportError("UnsupportedVersionError: old broker", retriable=False))).poll(10)
