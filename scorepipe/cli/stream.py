"""``scorepipe stream``, ``produce`` and ``labels``: the Kafka entry points."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from scorepipe.cli.options import kafka_options, stream_settings
from scorepipe.render import console, progress_bar

if TYPE_CHECKING:
    from scorepipe.settings import Settings


def cmd_stream(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from integrations.stores import model_stores
    from monitoring.health import Health, OpsServer
    from monitoring.metrics import ScoringMetrics
    from scoring.canary_models import follow_canary
    from scoring.watcher import watch_models
    from streaming.consumer import score_stream
    from streaming.process import long_running_scorer
    from streaming.topics import ensure_topics

    stopping = args.stopping
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    settings = stream_settings(args, settings)
    metrics, health = ScoringMetrics(), Health()
    # One OpenMP thread, as long_running_scorer sets for this thread: models load on the watcher's threads,
    # so their compiled trees are told (and verified with) the same.
    models, shadow = watch_models(
        settings, args.model, shadow=args.shadow, listeners=[metrics.on_reload], stores=model_stores(), threads=1
    )
    if not stopping.is_set():
        ensure_topics(settings, *_stream_topics(settings, shadow=args.shadow is not None))
    if stopping.is_set():
        for watcher in (models, shadow):
            if watcher is not None:
                watcher.stop()
        console.print("stopped before consuming: a stop signal came during start-up; nothing was read", soft_wrap=True)
        return 0
    server = None
    port = args.metrics_port if args.metrics_port is not None else settings.metrics_port
    if port is not None:
        server = OpsServer(metrics.registry, health, port=port, host=args.metrics_host).start()
    consumer = score_stream(
        settings,
        models,
        shadow=shadow,
        canary=follow_canary(settings, models, threads=1),
        metrics=metrics,
        health=health,
        client_id=args.client_id,
        stopping=stopping,
    )
    following = f"following {models.ref}" if models.follows else "pinned"
    console.print(
        f"scoring {settings.features_topic} -> {settings.predictions_topic} (dead letters: {settings.dlq_topic}) "
        f"with model v{models.version} ({following}), group {settings.consumer_group}, {settings.stream_guarantee}"
        + (f"; shadow {shadow.ref} v{shadow.version} -> {settings.shadow_topic}" if shadow else "")
        + (f"; metrics and health on {server.url}" if server else "")
        + "; Ctrl-C or SIGTERM to stop",
        soft_wrap=True,
    )
    try:
        with long_running_scorer():
            stats = consumer.run(idle_exit_seconds=args.exit_when_idle)
    finally:
        if server is not None:
            server.stop()
    console.print(f"stopped cleanly: {stats.as_dict()}; live window in {settings.live_dir}", soft_wrap=True)
    for agreement in consumer.agreements.values():
        console.print(f"shadow agreement: {agreement.summary()}", soft_wrap=True)
    return 0


def _stream_topics(settings: Settings, *, shadow: bool) -> tuple[str, ...]:
    topics = (settings.features_topic, settings.predictions_topic, settings.dlq_topic)
    return (*topics, settings.shadow_topic) if shadow else topics


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from streaming.producer import produce
    from streaming.topics import ensure_topics

    settings = stream_settings(args, settings)
    ensure_topics(settings)
    with progress_bar("producing") as progress:
        bar = progress.add_task("events", total=args.count)
        stats = produce(
            settings,
            count=args.count,
            rate=args.rate,
            seed=args.seed,
            drifted=args.drifted,
            malformed_share=args.malformed,
            on_progress=lambda n: progress.advance(bar, n),
        )
    console.print(
        f"sent {stats.sent:,} events ({stats.malformed:,} malformed) to {settings.features_topic} "
        f"in {stats.seconds:.1f}s ({stats.sent / max(stats.seconds, 1e-9):,.0f}/s)",
        soft_wrap=True,
    )
    return 0


def cmd_labels(args: argparse.Namespace, settings: Settings) -> int:
    from scoring.layout import REJECTED_DIR
    from scoring.storage import Location
    from streaming.labels import LabelSink
    from streaming.topics import ensure_topics

    settings = stream_settings(args, settings)
    ensure_topics(settings, args.topic)
    sink = LabelSink(settings, args.out, topic=args.topic, stopping=args.stopping)
    console.print(f"appending labels from {args.topic} to {args.out}; Ctrl-C or SIGTERM to stop", soft_wrap=True)
    stats = sink.run(idle_exit_seconds=args.exit_when_idle)
    console.print(
        f"{stats.labels:,} labels in {stats.files} file(s) under {args.out}; {stats.rejected:,} messages set aside "
        f"in {Location(args.out) / REJECTED_DIR}",
        soft_wrap=True,
    )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``scorepipe`` parser."""
    stream = commands.add_parser("stream", help="score the features topic in real time")
    kafka_options(stream)
    stream.add_argument(
        "--model", default="champion", help="alias or version; mlflow:models:/NAME@ALIAS follows an MLflow alias"
    )
    stream.add_argument("--batch-events", type=int, help="most events per micro-batch")
    stream.add_argument("--batch-ms", type=int, help="longest wait to fill a micro-batch")
    stream.add_argument("--shadow", help="also score with this alias or version (e.g. challenger), to the shadow topic")
    stream.add_argument("--shadow-topic", help="default: SCOREPIPE_SHADOW_TOPIC or predictions.shadow")
    stream.add_argument(
        "--metrics-port", type=int, help="serve /metrics, /healthz, /readyz on 127.0.0.1:PORT (0: any free port)"
    )
    stream.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="interface for --metrics-port (0.0.0.0 in a container, for Prometheus and probes to reach it)",
    )
    stream.add_argument(
        "--guarantee",
        choices=["at-least-once", "exactly-once"],
        help="exactly-once: results and input offsets commit in one Kafka transaction; read results with "
        "isolation_level=read_committed (default: SCOREPIPE_STREAM_GUARANTEE or at-least-once)",
    )
    stream.add_argument(
        "--client-id",
        default="scorepipe-stream",
        help="this member's name; with exactly-once also its transactional id: unique per member, stable across "
        "restarts",
    )
    stream.add_argument("--exit-when-idle", type=float, help="stop after this many seconds without events")
    stream.set_defaults(handler=cmd_stream, stoppable=True)

    producer = commands.add_parser("produce", help="send synthetic demo events to the features topic")
    kafka_options(producer)
    producer.add_argument("--count", type=int, default=10_000)
    producer.add_argument("--rate", type=float, default=0.0, help="events per second (0: as fast as possible)")
    producer.add_argument("--seed", type=int, default=7)
    producer.add_argument("--drifted", action="store_true")
    producer.add_argument("--malformed", type=float, default=0.0, help="share of malformed events, 0..1")
    producer.set_defaults(handler=cmd_produce)

    label_sink = commands.add_parser("labels", help="append delayed labels from a Kafka topic to label files")
    kafka_options(label_sink)
    label_sink.add_argument("--topic", default="labels", help='JSON {"event_id": ..., "label": ...} messages')
    label_sink.add_argument("--out", default="data/labels/stream", help="a folder (local or s3://bucket/prefix)")
    label_sink.add_argument("--exit-when-idle", type=float, help="stop after this many seconds without messages")
    label_sink.set_defaults(handler=cmd_labels, stoppable=True)
