"""Rebalances: before partitions move to another member, commit what was delivered for them."""

from __future__ import annotations

import logging
from collections.abc import Callable

from streaming.ledger import OffsetLedger, Partition
from streaming.transport.base import TopicPartition

log = logging.getLogger("scorepipe.stream")
HANDOVER_WAIT_S = 2.0  # on revocation: the longest wait for acknowledgements (the IO thread is blocked)


class HandOverOnRevoke:
    """Before partitions move to another member, commit what was delivered for them.

    The ledger gives the offsets (after a short wait for the batches in flight); the rest are left
    to the next owner, which reads them again (duplicates, never loss). kafka-python runs this on
    its IO thread, where a blocking ``commit()`` is refused, so the commit is sent without waiting:
    it is queued before the JoinGroup request on the same connection, while this member still owns
    the partitions. A partition that comes straight back is sought to its first undelivered offset.
    """

    def __init__(
        self,
        ledger: OffsetLedger,
        *,
        commit: Callable[[dict[Partition, int]], None],
        seek: Callable[[dict[Partition, int]], None],
    ) -> None:
        self.ledger = ledger
        self.commit = commit
        self.seek = seek

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        offsets = self.ledger.hand_over(set(revoked), HANDOVER_WAIT_S)
        if offsets:
            self.commit(offsets)
        log.info(
            "partitions revoked: %s (committing %s)",
            sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked),
            {f"{p[0]}[{p[1]}]": o for p, o in sorted(offsets.items())},
        )

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        """Evicted from the group (a missed session, a fenced instance): nothing of these partitions is committed.

        Another member may already own them and read from their last commit; committing what this
        member had in flight could skip events it never delivered. kafka-python's default would
        treat the loss as a revocation, and commit.
        """
        dropped = self.ledger.lose(set(lost))
        log.warning(
            "partitions lost: %s (%d batch(es) in flight for them dropped uncommitted; they will be read again)",
            sorted(f"{tp.topic}[{tp.partition}]" for tp in lost),
            dropped,
        )

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.seek(self.ledger.returned(set(assigned)))
        log.info("partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class AbortOnRevoke:
    """Exactly once: before partitions move, the open transaction is aborted (its offsets were never committed).

    The new owner reads from the committed offsets, which only a committed transaction moves, so
    what the aborted transaction wrote is never seen by a ``read_committed`` reader and is scored
    again exactly once. The transaction covers every partition, so the ones this member keeps (a
    cooperative rebalance revokes only those that move) are sought back at once to where it began,
    and the ones that come straight back are sought there when they do (``returned``): a client
    keeps its fetch positions for both.
    """

    def __init__(
        self, abort: Callable[[set[TopicPartition]], None], returned: Callable[[set[TopicPartition]], None]
    ) -> None:
        self.abort = abort
        self.returned = returned

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.abort(revoked)
        log.info("partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.abort(lost)  # evicted from the group: nothing of the open transaction may be committed
        log.info("partitions lost: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in lost))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.returned(set(assigned))
        log.info("partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
