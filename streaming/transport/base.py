"""The Kafka transport boundary: what the stream asks of a Kafka client library, in the library's absence.

The loop, both delivery guarantees, the sinks, the label sink, topics and status speak only these
types; a client library is a module implementing them (``streaming.transport.kafka_python``), whose
errors are translated at the boundary into the ``TransportError`` family below, so no code outside
it catches, names or imports a library's own exceptions or structures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol


class TopicPartition(NamedTuple):
    """A partition of a topic (equal to, and hashed like, the plain ``(topic, partition)`` tuple)."""

    topic: str
    partition: int


class Record(Protocol):
    """One consumed message, as the loop, the sinks and the label sink read it."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]] | None: ...
    @property
    def timestamp(self) -> int: ...


# -- errors ----------------------------------------------------------------------------------------


class TransportError(Exception):
    """A Kafka client library's error, translated: ``retriable`` says whether trying again can help."""

    retriable = False

    def __init__(self, message: str, *, retriable: bool | None = None, cause: BaseException | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable
        self.cause = cause  # the library's own exception, for the log


class NotAuthorized(TransportError):
    """The ACLs refuse an operation on ``resource``: ``topic``, ``group``, ``transactional_id``, ``cluster``."""

    def __init__(self, message: str, *, resource: str, cause: BaseException | None = None) -> None:
        super().__init__(message, retriable=False, cause=cause)
        self.resource = resource


class TransportTimeout(TransportError):
    """No answer in time (a broker away, a busy coordinator): trying again may help."""

    retriable = True


class ProducerFenced(TransportError):
    """A transactional producer that cannot go on: fenced by a newer one, or refused its transactional id."""


class TransactionStuck(ProducerFenced):
    """A transaction step had no outcome within its timeout: the producer is replaced, as if fenced."""


# -- what each client offers ---------------------------------------------------------------------


class RebalanceListener(Protocol):
    """Told, on the client's own thread, when partitions move; each call gets a set of ``TopicPartition``."""

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None: ...

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None: ...

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None: ...


class Delivery(Protocol):
    """The acknowledgements of a batch's sends."""

    def done(self) -> bool: ...

    def error(self) -> BaseException | None: ...

    def failures(self) -> int: ...

    def wait(self, timeout: float) -> None: ...

    def __add__(self, other: Any) -> Delivery: ...


class Producer(Protocol):
    """Sends records; ``delivery`` turns what ``send`` returned into one awaitable batch outcome."""

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> Any: ...

    def delivery(self, sent: list[Any]) -> Delivery: ...

    def partitions_for(self, topic: str) -> set[int]: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float = 10.0) -> bool: ...


CommitCallback = Callable[[BaseException | None], None]


class Consumer(Protocol):
    """A consumer: a group member (``subscribe``) or a reader of chosen partitions (``assign``)."""

    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None: ...

    def assign(self, partitions: Iterable[TopicPartition]) -> None: ...

    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[Record]: ...

    def assignment(self) -> set[TopicPartition]: ...

    def refused_topics(self) -> set[str]: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    def seek_to_beginning(self, *partitions: TopicPartition) -> None: ...

    def position(self, partition: TopicPartition, timeout_ms: int | None = None) -> int: ...

    def committed(self, partition: TopicPartition) -> int | None: ...

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None: ...

    def commit_async(self, offsets: Mapping[TopicPartition, int], callback: CommitCallback) -> None: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...

    def paused(self) -> set[TopicPartition]: ...

    def end_offsets(
        self, partitions: Iterable[TopicPartition], timeout_ms: int | None = None
    ) -> dict[TopicPartition, int]: ...

    def partitions_for_topic(self, topic: str) -> set[int]: ...

    def group_metadata(self) -> Any: ...

    def close(self) -> None: ...


class Transactions(Protocol):
    """One open transaction at a time on one transactional producer, replaced after a fatal error."""

    transactional_id: str
    open: bool

    @property
    def producer(self) -> Producer: ...

    def begin(self) -> None: ...

    def commit(self, offsets: Mapping[TopicPartition, int], consumer: Consumer) -> None: ...

    def abort(self) -> None: ...

    def replace(self) -> None: ...

    def close(self, timeout: float) -> bool: ...


@dataclass(frozen=True)
class GroupMember:
    client_id: str
    assigned: frozenset[TopicPartition]


@dataclass(frozen=True)
class GroupDescription:
    """A consumer group as the brokers describe it."""

    state: str
    members: tuple[GroupMember, ...] = field(default_factory=tuple)


class Admin(Protocol):
    """Cluster administration: topics, groups, and (for the local broker) users and ACLs."""

    def list_topics(self) -> set[str]: ...

    def create_topics(self, names: Iterable[str], partitions: int) -> None: ...

    def group_offsets(self, group: str, topic: str) -> dict[TopicPartition, int]: ...

    def describe_group(self, group: str) -> GroupDescription: ...

    def describe_cluster(self) -> None: ...

    def add_scram_user(self, name: str, mechanism: str, password: str) -> None: ...

    def change_acls(self, principal: str, grants: Iterable[tuple[str, str, str]], *, create: bool) -> None: ...

    def close(self) -> None: ...
