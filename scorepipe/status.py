"""``scorepipe status``: the registry, the stream's consumer group and the last flow runs on one screen.

Each part is gathered on its own and reports why it is unavailable (no registry yet, broker down,
no Prefect API configured) instead of failing the whole command.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console
from rich.table import Table

from scorepipe.settings import Settings
from scoring import Registry, ScoringError

FLOWS = ("score-batch", "drift-report", "performance-report")


def registry_table(settings: Settings) -> Table | str:
    registry = Registry(settings.registry_dir)
    try:
        versions = registry.versions()
    except ScoringError as exc:
        return f"registry {settings.registry_dir}: {exc}"
    if not versions:
        return f"registry {settings.registry_dir}: no model yet (run `scorepipe train`)"
    aliases = registry.aliases()
    table = Table(title=f"registry {settings.registry_dir}: " + ", ".join(f"{a} v{v}" for a, v in aliases.items()))
    for column in ("version", "created", "aliases", "roc_auc", "note"):
        table.add_column(column)
    for info in versions[-8:]:  # one screen: the newest versions
        auc = info.metrics.get("roc_auc")
        table.add_row(
            f"v{info.version}", info.created_at, ", ".join(info.aliases), f"{auc:.4f}" if auc else "-", info.note
        )
    return table


def group_lag(settings: Settings) -> dict[str, Any]:
    """The consumer group's state, members and lag per partition of the features topic."""
    from streaming.transport import transport_for
    from streaming.transport.base import TopicPartition, TransportError

    servers = settings.kafka_bootstrap_servers
    group = settings.consumer_group
    transport = transport_for(settings)
    try:
        admin = transport.admin(settings, bootstrap_timeout_ms=3000, request_timeout_ms=5000)
    except TransportError as exc:
        return {"error": f"broker {servers} unreachable: {exc}"}
    consumer = None
    try:
        described = admin.describe_group(group)
        topic = settings.features_topic
        committed = admin.group_offsets(group, topic)
        consumer = transport.reader(settings, read_committed=False, request_timeout_ms=5000)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions) if partitions else {}
    except TransportError as exc:
        return {"error": f"broker {servers}: {exc}"}
    finally:
        admin.close()
        if consumer is not None:
            consumer.close()
    rows = []
    for tp in sorted(ends, key=lambda t: t.partition):
        offset = committed.get(tp)
        rows.append({"partition": tp.partition, "end": ends[tp], "committed": offset,
                     "lag": ends[tp] - (offset or 0)})  # fmt: skip
    return {"state": described.state, "members": len(described.members), "partitions": rows}


def lag_table(settings: Settings) -> Table | str:
    found = group_lag(settings)
    if "error" in found:
        return found["error"]
    title = (
        f"Kafka {settings.kafka_bootstrap_servers}: group {settings.consumer_group} ({found['state']}, "
        f"{found['members']} member(s)) on {settings.features_topic}"
    )
    table = Table(title=title)
    for column in ("partition", "end offset", "committed", "lag"):
        table.add_column(column, justify="right")
    for row in found["partitions"]:
        committed = "-" if row["committed"] is None else f"{row['committed']:,}"
        table.add_row(str(row["partition"]), f"{row['end']:,}", committed, f"{row['lag']:,}")
    if not found["partitions"]:
        return title + f": topic {settings.features_topic} does not exist yet"
    return table


def flow_runs_table() -> Table | str:
    if not os.environ.get("PREFECT_API_URL"):
        return "Prefect: PREFECT_API_URL is not set, so no flow runs to show"
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    table = Table(title=f"last flow runs on {os.environ['PREFECT_API_URL']}")
    for column in ("flow", "run", "state", "started", "message"):
        table.add_column(column)
    try:
        with get_client(sync_client=True) as client:
            for name in FLOWS:
                runs = client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=[name])),
                    sort=FlowRunSort.START_TIME_DESC,
                    limit=1,
                )
                if not runs:
                    table.add_row(name, "-", "never run", "", "")
                    continue
                run = runs[0]
                state = run.state
                started = run.start_time.isoformat(timespec="seconds") if run.start_time else ""
                message = (state.message or "")[:80] if state else ""
                table.add_row(name, run.name, state.name if state else "?", started, message)
    except Exception as exc:  # noqa: BLE001 - status reports an unreachable API instead of failing
        return f"Prefect API {os.environ['PREFECT_API_URL']}: {type(exc).__name__}: {exc}"
    return table


def print_status(settings: Settings, console: Console) -> None:
    for part in (registry_table(settings), lag_table(settings), flow_runs_table()):
        console.print(part, soft_wrap=True) if isinstance(part, str) else console.print(part)
