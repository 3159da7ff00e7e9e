"""Both delivery guarantees without a broker: a fake transport (consumer, producer, transactions) stands in.

The integration tests run the same objects on a real broker (``test_stream``, ``test_exactly_once``,
``test_durability``); these pin down each rule where a broker cannot be made to misbehave on cue.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from monitoring.health import Health
from monitoring.metrics import ScoringMetrics
from scorepipe.settings import Settings
from streaming.delivery import AtLeastOnce, ExactlyOnce, StreamParts
from streaming.readiness import StreamReadiness
from streaming.stats import StreamStats
from streaming.transport.base import NotAuthorized, ProducerFenced, TopicPartition, TransportError, TransportTimeout

TOPIC = "features"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


class Future:
    """One send's outcome, settled by the test."""

    def __init__(self) -> None:
        self.is_done = False
        self.exception: BaseException | None = None

    def failed(self) -> bool:
        return self.exception is not None

    def get(self, timeout: float) -> None:
        if self.exception is not None:
            raise self.exception

    def ack(self) -> None:
        self.is_done = True

    def fail(self, error: BaseException) -> None:
        self.is_done, self.exception = True, error


class Producer:
    def __init__(self) -> None:
        self.closed = False

    def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    def close(self, timeout: float = 0) -> None:
        self.closed = True

    def flush(self, timeout: float = 0) -> None:
        pass

    def delivery(self, sent: list[Future]) -> FakeDelivery:
        return FakeDelivery(sent)


class FakeDelivery:
    """The outcome of a batch's sends, as a transport's ``Delivery``."""

    def __init__(self, futures: list[Future]) -> None:
        self.futures = futures

    def done(self) -> bool:
        return all(f.is_done for f in self.futures)

    def error(self) -> BaseException | None:
        return next((f.exception for f in self.futures if f.failed()), None)

    def failures(self) -> int:
        return sum(1 for f in self.futures if f.failed())

    def wait(self, timeout: float) -> None:
        pass

    def __add__(self, other: FakeDelivery) -> FakeDelivery:
        return FakeDelivery(self.futures + other.futures)


class Consumer:
    """What the deliveries ask of the client: assignment, seeks, commits, committed offsets."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = set(assigned)
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.commits: list[dict[TopicPartition, int]] = []
        self.committed_offsets: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.seeks.extend((tp, 0) for tp in partitions)

    def commit_async(self, offsets: dict, callback: Any) -> None:
        self.commits.append(dict(offsets))

    def commit(self, offsets: dict) -> None:
        self.commits.append(dict(offsets))

    def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offsets.get(tp)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1}

    def group_metadata(self) -> str:
        return "group-metadata"


class Outputs:
    """The sinks: each record of a batch becomes one send whose future the test settles."""

    topics = ["predictions"]

    def __init__(self) -> None:
        self.pending: list[Future] = []
        self.discarded = 0

    def flush(self) -> tuple[FakeDelivery, None]:
        sent, self.pending = self.pending, []
        return FakeDelivery(sent), None

    def discard(self) -> None:
        self.discarded += 1
        self.pending = []

    def count_shadow_failures(self, shadow: Any) -> None:
        pass


class Transactions:
    """A transactional producer's steps, recorded; ``fail_next_commit`` makes the next commit raise."""

    transactional_id = "scorepipe.member"

    def __init__(self) -> None:
        self.producer = Producer()
        self.open = False
        self.steps: list[str] = []
        self.committed: list[dict] = []
        self.fail_next_commit: BaseException | None = None

    def begin(self) -> None:
        if not self.open:
            self.open = True
            self.steps.append("begin")

    def commit(self, offsets: dict, consumer: Any) -> None:
        if self.fail_next_commit is not None:
            error, self.fail_next_commit = self.fail_next_commit, None
            raise error
        self.committed.append(dict(offsets))
        self.open = False
        self.steps.append("commit")

    def abort(self) -> None:
        self.open = False
        self.steps.append("abort")

    def replace(self) -> None:
        self.producer = Producer()
        self.open = False
        self.steps.append("replace")

    def close(self, timeout: float) -> bool:
        return True


def records(partition: int, *offsets: int) -> list[Any]:
    return [SimpleNamespace(topic=TOPIC, partition=partition, offset=o) for o in offsets]


class Stream:
    """One delivery with its fakes; ``send`` turns records into sends and returns their futures."""

    def __init__(self, guarantee: type, *, assigned=(P0, P1), **options: Any) -> None:
        self.settings = Settings(stream_max_in_flight=3, stream_retry_max_seconds=0.01)
        self.consumer = Consumer(set(assigned))
        self.outputs = Outputs()
        self.stats = StreamStats()
        self.stopping = threading.Event()
        self.stopping.set()  # back-off waits return at once: the tests look at what was decided, not at time
        self.accounted: list[int] = []
        self.readiness = StreamReadiness(Health(), "fake:9092", lambda: 1)
        parts = StreamParts(
            self.settings,
            None,  # type: ignore[arg-type]  # the fakes are handed to the delivery directly
            self.consumer,
            self.outputs,
            self.process,
            stats=self.stats,
            metrics=ScoringMetrics(),
            readiness=self.readiness,
            stopping=self.stopping,
        )
        self.delivery = guarantee(parts, client_id="member", **options)

    def process(self, batch: list[Any]) -> Any:
        self.outputs.pending = [Future() for _ in batch]
        return lambda: self.accounted.append(len(batch))

    def send(self, batch: list[Any], mark: int | None = None) -> list[Future]:
        self.process_futures: list[Future] = []
        original = self.process

        def capture(records: list[Any]) -> Any:
            account = original(records)
            self.process_futures = list(self.outputs.pending)
            return account

        self.delivery.process = capture
        self.delivery.send(batch, self.delivery.mark() if mark is None else mark)
        self.delivery.process = original
        return self.process_futures


def at_least_once(**options: Any) -> Stream:
    producers: list[Producer] = []

    def new_producer() -> Producer:
        producers.append(Producer())
        return producers[-1]

    stream = Stream(AtLeastOnce, new_producer=new_producer, **options)
    stream.producers = producers
    return stream


# -- at least once -----------------------------------------------------------------------------


def test_batches_commit_in_order_only_once_every_result_is_acknowledged():
    stream = at_least_once()
    first = stream.send(records(0, 10, 11))
    second = stream.send(records(0, 12))
    for future in second:
        future.ack()
    assert stream.delivery.settle(polled_nothing=False) == 0 and stream.consumer.commits == []
    for future in first:
        future.ack()
    assert stream.delivery.settle(polled_nothing=False) == 2
    assert stream.consumer.commits == [{P0: 13}] and stream.accounted == [2, 1]


def test_a_failed_send_rewinds_to_its_batch_drops_the_later_ones_and_backs_off():
    stream = at_least_once()
    delivered = stream.send(records(0, 1))
    failed = stream.send(records(0, 2, 3) + records(1, 7))
    later = stream.send(records(0, 4))
    for future in delivered + later:
        future.ack()
    failed[0].fail(TransportError("MessageSizeTooLargeError: too large", retriable=False))
    for future in failed[1:]:
        future.ack()
    assert stream.delivery.settle(polled_nothing=False) == 1
    assert stream.consumer.commits == [{P0: 2}]  # the delivered batch, nothing after the failure
    assert sorted(stream.consumer.seeks) == [(P0, 2), (P1, 7)]  # read again from the failed batch
    assert len(stream.delivery.ledger) == 0 and stream.accounted == [1]
    assert stream.stats.send_failures == 1 and "MessageSizeTooLargeError" in stream.readiness.send_error
    assert len(stream.producers) == 2 and stream.producers[0].closed  # not retriable: a new producer


def test_a_retriable_failure_keeps_the_producer():
    stream = at_least_once()
    failed = stream.send(records(0, 1))
    failed[0].fail(TransportTimeout("KafkaTimeoutError: broker away"))
    stream.delivery.settle(polled_nothing=False)
    assert len(stream.producers) == 1 and stream.consumer.seeks == [(P0, 1)]


def test_a_revocation_commits_what_was_delivered_and_leaves_the_rest_to_the_next_owner():
    stream = at_least_once()
    acked = stream.send(records(0, 5, 6))
    pending = stream.send(records(0, 7) + records(1, 3))
    for future in acked:
        future.ack()
    stream.delivery.listener.on_partitions_revoked({P0, P1})
    assert stream.consumer.commits == [{P0: 7}]  # up to the acknowledged batch; partition 1 had none
    assert pending and not any(f.is_done for f in pending)
    stream.delivery.listener.on_partitions_assigned({P0})  # came straight back: read again from the rewind point
    assert stream.consumer.seeks == [(P0, 7)]


def test_lost_partitions_are_never_committed_even_when_their_results_arrive_later():
    stream = at_least_once(assigned=(P0, P1))
    for future in stream.send(records(0, 18, 19)):
        future.ack()  # delivered, not yet committed: a revocation would commit it, an eviction must not
    batch = stream.send(records(0, 20) + records(1, 40))
    stream.delivery.listener.on_partitions_lost({P0})
    assert stream.consumer.commits == []  # an evicted member commits nothing for what it lost
    for future in batch:
        future.ack()
    stream.delivery.settle(polled_nothing=False)
    assert stream.consumer.commits == [{P1: 41}]
    stream.delivery.finish()
    assert all(P0 not in commit for commit in stream.consumer.commits)


def test_a_write_the_acls_refuse_is_read_again_and_named():
    stream = at_least_once()

    def refused(batch: list[Any]) -> Any:
        raise NotAuthorized("TopicAuthorizationFailedError: predictions", resource="topic")

    stream.delivery.process = refused
    stream.delivery.send(records(0, 9), 0)
    assert stream.consumer.seeks == [(P0, 9)] and stream.outputs.discarded == 1
    assert "not authorized to WRITE to topic predictions" in stream.readiness.send_error
    assert len(stream.delivery.ledger) == 0 and len(stream.producers) == 2


def test_on_stop_acknowledged_batches_are_committed_synchronously():
    stream = at_least_once()
    for future in stream.send(records(1, 0, 1, 2)):
        future.ack()
    stream.delivery.finish()
    assert stream.consumer.commits[-1] == {P1: 3} and stream.accounted == [3]


# -- exactly once ------------------------------------------------------------------------------


def exactly_once() -> tuple[Stream, Transactions]:
    transactions = Transactions()
    return Stream(ExactlyOnce, transactions=transactions), transactions


def test_batches_and_their_offsets_commit_in_one_transaction():
    stream, transactions = exactly_once()
    stream.send(records(0, 1, 2))
    stream.send(records(1, 8))
    assert transactions.steps == ["begin"]  # both batches in the open transaction
    assert stream.delivery.settle(polled_nothing=True) == 2
    assert transactions.committed == [{P0: 3, P1: 9}] and transactions.steps == ["begin", "commit"]
    assert stream.accounted == [2, 1] and stream.stats.commits == 1


def test_a_fenced_producer_is_replaced_and_the_batches_are_read_from_the_committed_offsets():
    stream, transactions = exactly_once()
    stream.consumer.committed_offsets = {P0: 1}
    stream.send(records(0, 1, 2, 3))
    transactions.fail_next_commit = ProducerFenced("ProducerFencedError: another member took the transactional id")
    assert stream.delivery.settle(polled_nothing=True) == 0
    assert transactions.steps == ["begin", "replace"] and transactions.committed == []
    assert stream.consumer.seeks == [(P0, 1)] and stream.accounted == []
    assert "ProducerFencedError" in stream.readiness.send_error


def test_a_transaction_that_fails_otherwise_is_aborted_and_read_again():
    stream, transactions = exactly_once()
    stream.send(records(1, 5, 6))
    transactions.fail_next_commit = TransportTimeout("KafkaTimeoutError: no answer")
    stream.delivery.settle(polled_nothing=True)
    assert transactions.steps == ["begin", "abort"]
    assert stream.consumer.seeks == [(P1, 5)]  # nothing committed for partition 1: from the batch's start


def test_a_revocation_aborts_the_open_transaction_and_a_batch_polled_before_it_is_not_sent():
    stream, transactions = exactly_once()
    stream.consumer.committed_offsets = {P0: 4}
    mark = stream.delivery.mark()
    stream.send(records(0, 4, 5))
    stream.delivery.listener.on_partitions_revoked({P0})
    assert transactions.steps == ["begin", "abort"] and len(stream.delivery.ledger) == 0
    stream.send(records(0, 6), mark=mark)  # polled before the revocation
    assert transactions.steps == ["begin", "abort"]  # not sent in a new transaction
    assert stream.consumer.seeks == [(P0, 4)]  # read again from what the group committed
    stream.delivery.listener.on_partitions_assigned({P0})
    assert stream.consumer.seeks[-1] == (P0, 4)  # back: from where the aborted transaction began


@pytest.mark.parametrize("polled_nothing, batches, expected", [(True, 1, 1), (False, 1, 0), (False, 3, 3)])
def test_a_transaction_commits_when_the_stream_pauses_or_at_the_in_flight_bound(polled_nothing, batches, expected):
    stream, transactions = exactly_once()
    for i in range(batches):
        stream.send(records(0, i))
    assert stream.delivery.settle(polled_nothing=polled_nothing) == expected


def test_a_cooperative_revocation_reads_the_kept_partitions_again_from_where_the_aborted_transaction_began():
    """A cooperative rebalance revokes only the partitions that move; the aborted transaction covered all."""
    stream, transactions = exactly_once()
    stream.send(records(0, 4, 5))
    stream.send(records(1, 7, 8))
    stream.delivery.listener.on_partitions_revoked({P0})  # P1 stays with this member
    assert transactions.steps == ["begin", "abort"]
    assert stream.consumer.seeks == [(P1, 7)]  # kept: read again now, or its aborted events would be skipped
    stream.delivery.listener.on_partitions_assigned({P0})
    assert stream.consumer.seeks[-1] == (P0, 4)  # the moved one, when it comes back
