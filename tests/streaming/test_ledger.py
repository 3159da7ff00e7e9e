"""The offset ledger without a broker: ordered commits, rewinds after a failure, hand-over on revocation."""

from __future__ import annotations

from streaming.ledger import OffsetLedger, span

P0, P1 = ("features", 0), ("features", 1)


class Delivery:
    """A batch's acknowledgements, settled by the test."""

    def __init__(self) -> None:
        self.acked = False
        self.failed: BaseException | None = None
        self.waited: list[float] = []

    def done(self) -> bool:
        return self.acked or self.failed is not None

    def error(self) -> BaseException | None:
        return self.failed

    def wait(self, timeout: float) -> None:
        self.waited.append(timeout)


def batch(ledger: OffsetLedger, *offsets: tuple[tuple[str, int], int]) -> Delivery:
    delivery = Delivery()
    ledger.add(*span((p[0], p[1], o) for p, o in offsets), delivery)
    return delivery


def test_span_gives_the_first_offset_and_the_one_to_commit_per_partition():
    assert span([("t", 0, 5), ("t", 1, 9), ("t", 0, 6)]) == ({("t", 0): 5, ("t", 1): 9}, {("t", 0): 7, ("t", 1): 10})


def test_only_leading_acknowledged_batches_commit_and_in_order():
    ledger = OffsetLedger()
    first = batch(ledger, (P0, 0), (P0, 1))
    second = batch(ledger, (P0, 2), (P1, 0))
    second.acked = True  # acknowledged before the first: it must wait for it
    assert ledger.settle().commit == {}
    assert len(ledger) == 2
    first.acked = True
    settled = ledger.settle()
    assert settled.commit == {P0: 3, P1: 1} and len(settled.delivered) == 2
    assert ledger.positions == {P0: 3, P1: 1} and len(ledger) == 0


def test_a_failed_batch_drops_itself_and_every_later_one_and_rewinds_to_its_first_offsets():
    ledger = OffsetLedger()
    delivered = batch(ledger, (P0, 0))
    failed = batch(ledger, (P0, 1), (P1, 0))
    later = batch(ledger, (P0, 2), (P1, 1))
    delivered.acked, later.acked = True, True
    failed.failed = TimeoutError("no acknowledgement")
    settled = ledger.settle()
    assert settled.commit == {P0: 1}  # what was delivered before the failure still commits
    assert isinstance(settled.failure, TimeoutError)
    assert settled.rewind == {P0: 1, P1: 0} and settled.dropped == 2
    assert len(ledger) == 0 and ledger.positions == {P0: 1}


def test_hand_over_commits_acknowledged_batches_of_revoked_partitions_and_rewinds_the_rest():
    ledger = OffsetLedger()
    acked = batch(ledger, (P0, 0), (P1, 0))
    pending = batch(ledger, (P0, 1), (P1, 1))
    acked.acked = True
    offsets = ledger.hand_over({P0}, wait_seconds=0.5)
    assert offsets == {P0: 1}
    assert pending.waited and pending.waited[0] <= 0.5  # batches of revoked partitions were waited for
    assert ledger.returned({P0, P1}) == {P0: 1}  # P0 came straight back: read it again from 1
    assert ledger.returned({P0}) == {}  # a rewind is used once
    pending.acked = True
    assert ledger.settle().commit == {P1: 2}  # P1 is still ours; P0 left the batches


def test_a_lost_commit_is_due_again_until_a_newer_commit():
    ledger = OffsetLedger()
    batch(ledger, (P0, 0)).acked = True
    assert ledger.settle().commit == {P0: 1}
    assert ledger.commit_due() == {}
    ledger.commit_failed()
    assert ledger.commit_due() == {P0: 1}
    assert ledger.commit_due() == {}  # asked for once
    ledger.commit_failed()
    batch(ledger, (P0, 1)).acked = True
    ledger.settle()  # a newer commit covers it
    assert ledger.commit_due() == {}


def test_stopping_forgets_unacknowledged_batches_but_keeps_delivered_positions():
    ledger = OffsetLedger()
    batch(ledger, (P0, 0)).acked = True
    batch(ledger, (P0, 1))
    ledger.settle()
    assert ledger.drop_unacknowledged() == 1
    assert ledger.positions == {P0: 1} and ledger.oldest() is None


def test_partitions_are_any_hashable_key_so_a_client_library_s_own_type_works():
    from typing import NamedTuple

    class TopicPartition(NamedTuple):
        topic: str
        partition: int

    ledger = OffsetLedger()
    batch(ledger, (P0, 4)).acked = True
    ledger.settle()
    assert ledger.hand_over({TopicPartition("features", 0)}, wait_seconds=0) == {P0: 5}


def test_a_batch_with_no_outcome_long_after_sending_counts_as_failed():
    from streaming.ledger import DeliveryStuck

    ledger = OffsetLedger()
    silent = batch(ledger, (P0, 0), (P1, 3))
    later = batch(ledger, (P0, 1))
    assert ledger.settle(stuck_after=60).failure is None  # not yet
    ledger.oldest().sent_at -= 61
    settled = ledger.settle(stuck_after=60)
    assert isinstance(settled.failure, DeliveryStuck) and not DeliveryStuck.retriable
    assert settled.rewind == {P0: 0, P1: 3} and settled.dropped == 2 and len(ledger) == 0
    assert not silent.done() and not later.done()


def test_a_transaction_takes_every_batch_in_flight_and_the_offsets_after_the_last():
    ledger = OffsetLedger()
    batch(ledger, (P0, 0), (P0, 1))
    batch(ledger, (P0, 2), (P1, 7))
    batches, after = ledger.take_all()
    assert len(batches) == 2 and after == {P0: 3, P1: 8} and len(ledger) == 0
    assert ledger.positions == {}  # nothing is committed until the transaction is
    ledger.committed(after)
    assert ledger.positions == {P0: 3, P1: 8}
    assert ledger.take_all() == ([], {})


def test_an_aborted_transaction_rewinds_to_the_first_offset_of_each_partition():
    ledger = OffsetLedger()
    batch(ledger, (P0, 4), (P1, 2))
    batch(ledger, (P0, 6), (P1, 3))
    assert ledger.drop_all() == {P0: 4, P1: 2}
    assert len(ledger) == 0 and ledger.drop_all() == {}
