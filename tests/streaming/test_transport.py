"""The kafka-python transport without a broker: its errors become the transport's, partitions neutral."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kafka import TopicPartition as KafkaPartition
from kafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    ProducerFencedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
)

from scorepipe.settings import Settings
from streaming.transport import transport_for
from streaming.transport.base import NotAuthorized, ProducerFenced, TopicPartition, TransportError, TransportTimeout
from streaming.transport.kafka_python import KafkaPythonTransport
from streaming.transport.kafka_python.consumer import Consumer
from streaming.transport.kafka_python.errors import translate


@pytest.mark.parametrize(
    ("error", "kind", "retriable", "resource"),
    [
        (KafkaConnectionError("down"), TransportError, True, None),
        (MessageSizeTooLargeError("big"), TransportError, False, None),
        (KafkaTimeoutError("slow"), TransportTimeout, True, None),
        (TopicAuthorizationFailedError("predictions"), NotAuthorized, False, "topic"),
        (GroupAuthorizationFailedError("scorepipe"), NotAuthorized, False, "group"),
        (ProducerFencedError("newer epoch"), ProducerFenced, False, None),
        (TransactionalIdAuthorizationFailedError("tx"), ProducerFenced, False, None),
    ],
)
def test_each_kafka_python_error_becomes_the_transports_keeping_its_name(error, kind, retriable, resource):
    translated = translate(error)
    assert type(translated) is kind and translated.retriable is retriable
    assert type(error).__name__ in str(translated) and translated.cause is error
    assert getattr(translated, "resource", None) == resource
    assert translate(ValueError("not kafka")).__class__ is ValueError


class FakeKafkaConsumer:
    def __init__(self, *outcomes) -> None:
        self.outcomes = list(outcomes)
        self.seeks: list = []
        self.commits: list = []

    def poll(self, timeout_ms: int, max_records: int | None) -> dict:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def seek(self, partition, offset) -> None:
        assert isinstance(partition, KafkaPartition), "kafka-python checks the class"
        self.seeks.append((partition, offset))

    def commit(self, offsets) -> None:
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})

    def assignment(self) -> set:
        return {KafkaPartition("features", 1)}


def test_the_consumer_flattens_polls_translates_errors_and_speaks_neutral_partitions():
    records = [SimpleNamespace(offset=4), SimpleNamespace(offset=5)]
    consumer = Consumer(FakeKafkaConsumer({KafkaPartition("features", 0): records}, GroupAuthorizationFailedError("g")))
    assert consumer.poll(10) == records
    with pytest.raises(NotAuthorized) as refused:
        consumer.poll(10)
    assert refused.value.resource == "group"
    assert consumer.assignment() == {TopicPartition("features", 1)}
    consumer.seek(TopicPartition("features", 0), 7)
    consumer.commit({TopicPartition("features", 0): 8})
    assert consumer.client.seeks == [(KafkaPartition("features", 0), 7)]
    assert consumer.client.commits == [{KafkaPartition("features", 0): 8}]


def test_the_settings_choose_the_transport():
    assert isinstance(transport_for(Settings()), KafkaPythonTransport)
    assert transport_for(Settings()).name == Settings().kafka_client == "kafka-python"
