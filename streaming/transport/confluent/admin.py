"""confluent-kafka's ``AdminClient`` behind the transport's ``Admin``: topics, groups, users and ACLs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streaming.transport.base import GroupDescription, GroupMember, TopicPartition, TransportError
from streaming.transport.confluent.errors import error_of, translated


class Admin:
    """One ``AdminClient``; each call waits up to ``timeout`` seconds for its answer."""

    def __init__(self, config: dict[str, Any], timeout: float) -> None:
        self.config = config
        self.client = AdminClient(config)
        self.timeout = timeout

    @translated
    def list_topics(self) -> set[str]:
        return {name for name in self.client.list_topics(timeout=self.timeout).topics if not name.startswith("__")}

    @translated
    def create_topics(self, names: Iterable[str], partitions: int) -> None:
        new = [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
        if not new:
            return
        for future in self.client.create_topics(new, request_timeout=self.timeout).values():
            try:
                future.result(timeout=self.timeout)
            except KafkaException as exc:
                error = error_of(exc)
                if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another process was first
                    raise

    @translated
    def group_offsets(self, group: str, topic: str) -> dict[TopicPartition, int]:
        """What ``group`` committed on ``topic``, by partition (partitions with no commit left out).

        Asked through a consumer of the group that never joins it, not ``list_consumer_group_offsets``:
        librdkafka 2.16's admin client crashes the process (in ``rd_kafka_cgrp_op``) when that
        answer says the coordinator is still loading, as it does right after a broker starts.
        """
        from confluent_kafka import Consumer as RdKafkaConsumer
        from confluent_kafka import TopicPartition as KafkaPartition

        reader = RdKafkaConsumer({**self.config, "group.id": group, "enable.auto.commit": False})
        try:
            metadata = reader.list_topics(topic, timeout=self.timeout).topics.get(topic)
            if metadata is None or metadata.error is not None:
                return {}
            asked = [KafkaPartition(topic, p) for p in metadata.partitions]
            found = reader.committed(asked, timeout=self.timeout)
        finally:
            reader.close()
        return {TopicPartition(tp.topic, tp.partition): int(tp.offset) for tp in found if tp.offset >= 0}

    @translated
    def describe_group(self, group: str) -> GroupDescription:
        described = self.client.describe_consumer_groups([group])[group].result(timeout=self.timeout)
        members = tuple(
            GroupMember(
                client_id=str(member.client_id or ""),
                assigned=frozenset(
                    TopicPartition(tp.topic, tp.partition)
                    for tp in (member.assignment.topic_partitions if member.assignment else ())
                ),
            )
            for member in described.members or ()
        )
        state = getattr(described.state, "name", str(described.state))
        return GroupDescription(state=_group_state(state), members=members)

    @translated
    def describe_cluster(self) -> None:
        self.client.describe_cluster().result(timeout=self.timeout)

    @translated
    def add_scram_user(self, name: str, mechanism: str, password: str) -> None:
        from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

        info = ScramCredentialInfo(ScramMechanism[mechanism.replace("-", "_")], 8192)
        upsert = UserScramCredentialUpsertion(name, info, password.encode())
        for future in self.client.alter_user_scram_credentials([upsert]).values():
            future.result(timeout=self.timeout)

    @translated
    def change_acls(self, principal: str, grants: Iterable[tuple[str, str, str]], *, create: bool) -> None:
        """Allow (``create``) or remove ACLs for ``principal``; a grant: (resource type, name or prefix*, operation)."""
        from confluent_kafka.admin import (
            AclBinding,
            AclBindingFilter,
            AclOperation,
            AclPermissionType,
            ResourcePatternType,
            ResourceType,
        )

        bindings: list[Any] = []
        for kind, name, operation in grants:
            literal = name == "*" or not name.endswith("*")
            resource = name if literal else name[:-1]
            pattern = ResourcePatternType.LITERAL if literal else ResourcePatternType.PREFIXED
            kind_of = ResourceType[kind]
            make = AclBinding if create else AclBindingFilter
            bindings.append(
                make(kind_of, resource, pattern, principal, "*", AclOperation[operation], AclPermissionType.ALLOW)
            )
        futures = self.client.create_acls(bindings) if create else self.client.delete_acls(bindings)
        for future in futures.values():
            try:
                future.result(timeout=self.timeout)
            except KafkaException as exc:
                raise TransportError(f"changing ACLs for {principal} failed: {exc}") from exc

    def close(self) -> None:
        """An admin client holds no group or transaction: nothing to leave (librdkafka frees it with the object)."""


def _group_state(state: str) -> str:
    """Librdkafka's state names (``STABLE``) as the broker's (``Stable``), which the status command shows."""
    return {"PREPARING_REBALANCING": "PreparingRebalance", "COMPLETING_REBALANCING": "CompletingRebalance"}.get(
        state, state.title()
    )
