"""Options and settings shared by several command groups."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scorepipe.settings import Settings

DRIFT_EXIT_CODE = 4  # drift detected, or performance degraded: a verdict to act on, not a crash


def kafka_options(parser: argparse.ArgumentParser) -> None:
    """Where the brokers are and which group: every command that talks to Kafka takes these."""
    parser.add_argument("--bootstrap-servers", help="default: SCOREPIPE_KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092")
    parser.add_argument(
        "--kafka-config",
        metavar="FILE",
        help="Kafka client properties (as Confluent Cloud, MSK or `scorepipe kafka up --secure` write them); "
        "default: SCOREPIPE_KAFKA_CONFIG",
    )
    parser.add_argument("--group", help="consumer group (default: scorepipe)")
    parser.add_argument(
        "--kafka-client",
        choices=["kafka-python", "confluent"],
        help="Kafka client library (default: SCOREPIPE_KAFKA_CLIENT or kafka-python; confluent is librdkafka)",
    )


def label_options(parser: argparse.ArgumentParser) -> None:
    """How delayed labels join scored rows: every command that reads label files takes these."""
    parser.add_argument("--id-column", help="id to join labels on (default: event_id or transaction_id)")
    parser.add_argument("--label-column", default="label")


def stream_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """``settings`` with the Kafka options given on the command line, validated like any setting."""
    updates = {
        "kafka_config": getattr(args, "kafka_config", None),
        "kafka_client": getattr(args, "kafka_client", None),
        "kafka_bootstrap_servers": getattr(args, "bootstrap_servers", None),
        "consumer_group": getattr(args, "group", None),
        "stream_batch_events": getattr(args, "batch_events", None),
        "stream_batch_ms": getattr(args, "batch_ms", None),
        "shadow_topic": getattr(args, "shadow_topic", None),
        "stream_guarantee": getattr(args, "guarantee", None),
    }
    return settings.model_copy(update={k: v for k, v in updates.items() if v is not None})
