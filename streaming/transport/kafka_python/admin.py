"""kafka-python's ``KafkaAdminClient`` behind the transport's ``Admin``: topics, groups, users and ACLs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from streaming.transport.base import GroupDescription, GroupMember, TopicPartition, TransportError
from streaming.transport.kafka_python.errors import translated


class Admin:
    """One ``KafkaAdminClient``."""

    def __init__(self, admin: KafkaAdminClient) -> None:
        self.client = admin

    @translated
    def list_topics(self) -> set[str]:
        return set(self.client.list_topics())

    @translated
    def create_topics(self, names: Iterable[str], partitions: int) -> None:
        new = [NewTopic(name, partitions, 1) for name in names]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them first
                self.client.create_topics(new)

    @translated
    def group_offsets(self, group: str, topic: str) -> dict[TopicPartition, int]:
        """What ``group`` committed on ``topic``, by partition (partitions with no commit left out)."""
        found = self.client.list_group_offsets(group)[group]
        return {
            TopicPartition(tp.topic, tp.partition): o.offset
            for tp, o in found.items()
            if o.offset >= 0 and tp.topic == topic
        }

    @translated
    def describe_group(self, group: str) -> GroupDescription:
        described = self.client.describe_groups([group])[group]
        members = tuple(
            GroupMember(
                client_id=str(found.get("client_id") or ""),
                assigned=frozenset(
                    TopicPartition(topic["topic"], p)
                    for topic in (found.get("member_assignment") or {}).get("assigned_partitions", [])
                    for p in topic["partitions"]
                ),
            )
            for found in described.get("members") or []
        )
        return GroupDescription(state=str(described.get("group_state") or ""), members=members)

    @translated
    def describe_cluster(self) -> None:
        self.client.describe_cluster()

    @translated
    def add_scram_user(self, name: str, mechanism: str, password: str) -> None:
        from kafka.admin import UserScramCredentialUpsertion

        self.client.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(name, mechanism, password, iterations=8192)]
        )

    @translated
    def change_acls(self, principal: str, grants: Iterable[tuple[str, str, str]], *, create: bool) -> None:
        """Allow (``create``) or remove ACLs for ``principal``; a grant: (resource type, name or prefix*, operation)."""
        from kafka.admin import (
            ACL,
            ACLFilter,
            ACLOperation,
            ACLPermissionType,
            ACLResourcePatternType,
            ResourcePattern,
            ResourcePatternFilter,
            ResourceType,
        )

        acls: list[Any] = []
        for kind, name, operation in grants:
            literal = name == "*" or not name.endswith("*")
            resource = name if literal else name[:-1]
            pattern_type = ACLResourcePatternType.LITERAL if literal else ACLResourcePatternType.PREFIXED
            if create:
                pattern: Any = ResourcePattern(ResourceType[kind], resource, pattern_type)
                acls.append(ACL(principal, "*", ACLOperation[operation], ACLPermissionType.ALLOW, pattern))
            else:
                pattern = ResourcePatternFilter(ResourceType[kind], resource, pattern_type)
                acls.append(ACLFilter(principal, "*", ACLOperation[operation], ACLPermissionType.ALLOW, pattern))
        result = self.client.create_acls(acls) if create else self.client.delete_acls(acls)
        failed = result.get("failed") if isinstance(result, dict) else None
        if failed:
            raise TransportError(f"changing ACLs for {principal} failed: {failed}")

    @translated
    def close(self) -> None:
        self.client.close()
