"""``scorepipe``: one command line for training, the registry, batch scoring and the demo."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import joblib
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from scorepipe.demo_data import write_dataset, write_incoming
from scoring import QualityGateError, Registry, Scorer, ScoringError, Settings, synthetic
from scoring.storage import Location

if TYPE_CHECKING:
    from scorepipe.s3_server import S3Server
from scoring.training import bundle_from_estimator, check_quality_gate, train_bundle

console = Console()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    settings = Settings()
    try:
        return int(args.handler(args, settings) or 0)
    except ScoringError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 1


# -- data ------------------------------------------------------------------------------------


def cmd_data_generate(args: argparse.Namespace, settings: Settings) -> int:
    path = write_dataset(args.out, args.rows, seed=args.seed, drifted=args.drifted, with_target=not args.no_target)
    console.print(f"wrote {args.rows:,} {'drifted ' if args.drifted else ''}rows to {path}")
    return 0


def cmd_data_incoming(args: argparse.Namespace, settings: Settings) -> int:
    folder = args.out / f"date={args.date}"
    paths = write_incoming(
        folder,
        files=args.files,
        rows_per_file=args.rows,
        seed=args.seed,
        drifted=args.drifted,
        bad_rows=args.bad_rows,
        corrupt_file=args.corrupt,
    )
    console.print(f"wrote {len(paths)} files ({args.files * args.rows:,} rows) to {folder}")
    return 0


# -- training and registry -------------------------------------------------------------------


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    registry = Registry(settings.registry_dir)
    if args.data:
        with console.status(f"reading {args.data}"):
            frame = pd.read_parquet(args.data)
        target, bounds, source = args.target, None, str(args.data)
    else:
        with console.status(f"generating {args.rows:,} synthetic transactions"):
            frame = synthetic.generate(args.rows, seed=settings.seed)
        target, bounds, source = synthetic.TARGET, synthetic.BOUNDS, f"synthetic:{args.rows}:{settings.seed}"
    features = [c for c in frame.columns if c not in {target, synthetic.ID_COLUMN}] if not args.data else None
    with console.status(f"training on {len(frame):,} rows"):
        bundle = train_bundle(
            frame,
            target,
            features=features,
            bounds=bounds,
            reference_rows=settings.reference_rows,
            seed=settings.seed,
            source=source,
        )
    version = registry.register(bundle, note=args.note or f"trained on {source}")
    _print_metrics(version, bundle.metrics)
    return _gate_and_promote(registry, version, bundle.metrics, settings, promote=not args.no_promote)


def cmd_models_register(args: argparse.Namespace, settings: Settings) -> int:
    registry = Registry(settings.registry_dir)
    estimator = joblib.load(args.model)  # the user's own file, loaded at their request
    reference = pd.read_parquet(args.reference)
    bundle = bundle_from_estimator(
        estimator,
        reference,
        target=args.target,
        reference_rows=settings.reference_rows,
        seed=settings.seed,
        source=str(args.model),
    )
    version = registry.register(bundle, note=args.note or f"registered from {args.model}")
    _print_metrics(version, bundle.metrics)
    if args.alias:
        if bundle.metrics:
            return _gate_and_promote(registry, version, bundle.metrics, settings, promote=True, alias=args.alias)
        registry.promote(version, args.alias)
        console.print(f"promoted v{version} to {args.alias} (no target given, so no quality gate)")
    return 0


def _gate_and_promote(
    registry: Registry, version: int, metrics: dict, settings: Settings, *, promote: bool, alias: str = "champion"
) -> int:
    try:
        check_quality_gate(metrics, settings.min_roc_auc)
    except QualityGateError as exc:
        console.print(f"[yellow]v{version} registered but not promoted:[/] {exc}")
        return 3
    if promote:
        previous = registry.promote(version, alias)
        was = f" (was v{previous})" if previous else ""
        console.print(f"[green]v{version} passed the quality gate and is now {alias}{was}[/]")
    return 0


def _print_metrics(version: int, metrics: dict) -> None:
    table = Table(title=f"model v{version}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    registry = Registry(settings.registry_dir)
    table = Table(title=f"registry {settings.registry_dir}")
    for column in ("version", "created", "aliases", "roc_auc", "note"):
        table.add_column(column)
    for info in registry.versions():
        auc = info.metrics.get("roc_auc")
        table.add_row(
            f"v{info.version}", info.created_at, ", ".join(info.aliases), f"{auc:.4f}" if auc else "-", info.note
        )
    console.print(table)
    return 0


def cmd_models_show(args: argparse.Namespace, settings: Settings) -> int:
    registry = Registry(settings.registry_dir)
    loaded = registry.load(args.ref)  # verifies every hash
    info = registry.info(loaded.version)
    bundle = loaded.bundle
    console.print(f"[bold]v{info.version}[/] {', '.join(info.aliases)} created {info.created_at}: {info.note}")
    console.print(f"estimator {bundle.info.get('estimator')}, classes {bundle.classes}, metrics {bundle.metrics}")
    table = Table(title="feature schema")
    for column in ("feature", "kind", "nullable", "bounds", "observed / categories"):
        table.add_column(column)
    for f in bundle.schema.features:
        if f.kind == "numeric":
            bounds = f"[{_fmt(f.min_value)}, {_fmt(f.max_value)}]"
            seen = f"{_fmt(f.observed_min)} .. {_fmt(f.observed_max)}"
        else:
            bounds = "any" if f.allow_unknown else "known only"
            seen = ", ".join(f.categories)
        table.add_row(f.name, f.kind, str(f.nullable), bounds, seen)
    console.print(table)
    for name, digest in info.files.items():
        console.print(f"  sha256 {digest}  {name}")
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def cmd_models_promote(args: argparse.Namespace, settings: Settings) -> int:
    registry = Registry(settings.registry_dir)
    version = registry.resolve(args.ref)
    previous = registry.promote(version, args.alias)
    console.print(f"{args.alias}: v{previous} -> v{version}" if previous else f"{args.alias}: v{version}")
    return 0


def cmd_models_rollback(args: argparse.Namespace, settings: Settings) -> int:
    registry = Registry(settings.registry_dir)
    before = registry.resolve(args.alias)
    after = registry.rollback(args.alias)
    console.print(f"{args.alias}: v{before} -> v{after} (rolled back)")
    return 0


# -- batch scoring ---------------------------------------------------------------------------


def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    from flows.batch import ROWS_SCORED
    from flows.score_batch import score_batch
    from scoring.sources import discover_inputs

    total = sum(_row_count(p) for p in discover_inputs(args.input).files)
    with _progress("scoring") as progress:
        bar = progress.add_task("rows", total=total)
        token = ROWS_SCORED.set(lambda n: progress.advance(bar, n))
        try:
            summary = score_batch.fn(  # the flow's own function, run here without a Prefect server
                input=str(args.input),
                output=str(args.output),
                model=args.model,
                chunk_size=args.chunk_size,
                force=args.force,
                shadow=args.shadow,
                workers=args.workers,
                dask_address=args.dask_address,
            )
        finally:
            ROWS_SCORED.reset(token)
    print_summary(summary)
    return 0


def cmd_compare(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from scoring.compare import compare_outputs, find_shadow

    shadow = args.shadow or find_shadow(args.scored)
    pairs = compare_outputs(args.scored, shadow)
    table = Table(title=f"champion vs challenger: {args.scored} against {shadow}")
    for column in ("champion", "challenger", "rows compared", "label agreement", "mean |Δp|", "p95 |Δp|"):
        table.add_column(column, justify="right")
    summaries = [p.summary() for p in pairs]
    for s in summaries:
        table.add_row(
            f"v{s['champion_version']}",
            f"v{s['challenger_version']}",
            f"{s['rows_compared']:,}",
            f"{s['label_agreement']:.4f}",
            f"{s['mean_abs_proba_diff']:.4f}",
            f"{s['p95_abs_proba_diff']:.3f}",
        )
    console.print(table)
    out = Location(args.out or settings.reports_dir / f"compare-{Location(args.scored).name}.json")
    outcomes = None
    if args.labels:
        from performance.report import challenger_on_outcomes

        with console.status(f"judging both on the labels in {args.labels}"):
            outcomes = challenger_on_outcomes(
                args.scored,
                args.labels,
                settings,
                shadow=shadow,
                id_column=args.id_column,
                label_column=args.label_column,
            )
        if outcomes is None:
            console.print("no row labelled for both champion and challenger (or a model with more than two classes)")
        else:
            print_outcomes(outcomes)
    body = {"scored": str(args.scored), "shadow": str(shadow), "pairs": summaries, "outcomes": outcomes}
    out.write_text(json.dumps(body, indent=2))  # whole or not at all, local or s3://
    console.print(f"summary: {out}", soft_wrap=True)
    return 0


def print_outcomes(c: dict) -> None:
    console.print(
        f"challenger v{c['challenger_version']} vs champion v{c['champion_version']} "
        f"on {c['rows']:,} labelled rows: "
        f"ROC AUC {c['challenger_roc_auc']:.4f} vs {c['champion_roc_auc']:.4f}, difference {c['difference']:+.4f} "
        f"(95% CI {c['ci95_low']:+.4f} .. {c['ci95_high']:+.4f}): {c['better']}",
        soft_wrap=True,
    )


def _progress(label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def _row_count(path: Location) -> int:
    try:
        return pq.ParquetFile(path.path, filesystem=path.fs).metadata.num_rows
    except (pa.ArrowException, OSError):
        return 0  # unreadable: the run quarantines it


def print_summary(summary: dict) -> None:
    table = Table(title=f"score-batch with model v{summary['model_version']}")
    for column in ("file", "status", "rows", "scored", "rejected", "output / error"):
        table.add_column(column, overflow="fold")
    for f in summary["files"]:
        table.add_row(
            Path(f["source"]).name,
            f["status"],
            str(f["rows"]),
            str(f["scored"]),
            str(f["rejected"]),
            f["error"] or f["output"] or "",
        )
    console.print(table)
    console.print(
        f"{summary['rows_scored']:,} rows scored, {summary['rows_rejected']:,} rejected "
        f"({summary['files_quarantined']} file(s) quarantined, {summary['files_skipped']} skipped, "
        f"{summary['files_failed']} failed); results in {summary['output']}"
    )


# -- streaming -------------------------------------------------------------------------------


def _stream_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    updates = {
        "kafka_bootstrap_servers": getattr(args, "bootstrap_servers", None),
        "consumer_group": getattr(args, "group", None),
        "stream_batch_events": getattr(args, "batch_events", None),
        "stream_batch_ms": getattr(args, "batch_ms", None),
        "shadow_topic": getattr(args, "shadow_topic", None),
    }
    return settings.model_copy(update={k: v for k, v in updates.items() if v is not None})


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from scorepipe.kafka_broker import KafkaBroker, read_identity, read_state, stop_detached
    from scorepipe.services import port_in_use

    home = settings.home / "kafka"
    state = read_state(home)
    if args.action == "up":
        if state and port_in_use(int(state["port"])):
            if args.reset:
                console.print(f"Kafka is up at {state['bootstrap_servers']}: `scorepipe kafka down` before --reset")
                return 1
            console.print(f"Kafka already up at {state['bootstrap_servers']} (PID {state['pid']})")
            return 0
        kept = bool(read_identity(home)) and not args.reset
        with console.status("starting Apache Kafka (KRaft, single node)"):
            broker = KafkaBroker(home, port=args.port, reset=args.reset).start()
        broker.save_state()
        console.print(f"Kafka up at {broker.bootstrap_servers} (PID {broker.pid}); log {broker.log_path}")
        what = "kept from the last run" if kept else "new (formatted now)"
        console.print(f"data: {broker.data_dir} ({what}; cluster {broker.cluster_id})")
        console.print(f"export SCOREPIPE_KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
        return 0
    if args.action == "down":
        stopped = stop_detached(home)
        console.print(f"stopped Kafka PID {stopped['pid']}" if stopped else "no Kafka broker recorded as up")
        identity = read_identity(home)
        if identity:
            console.print(f"data kept in {identity['data_dir']} (`scorepipe kafka up --reset` starts afresh)")
        return 0
    identity = read_identity(home)
    where = f"; data in {identity['data_dir']} (cluster {identity['cluster_id']})" if identity else ""
    if state and port_in_use(int(state["port"])):
        console.print(f"up at {state['bootstrap_servers']} (PID {state['pid']}){where}")
        return 0
    console.print(f"down{where}")
    return 1


def cmd_s3(args: argparse.Namespace, settings: Settings) -> int:
    from scorepipe.s3_server import S3Server, read_state, stop_detached

    home = settings.home / "s3"
    state = read_state(home)
    if args.action == "down":
        stopped = stop_detached(home)
        console.print(f"stopped S3Proxy PID {stopped['pid']}" if stopped else "no S3 server recorded as up")
        console.print(f"objects kept in {home / 'data'}")
        return 0
    if args.action == "status" or state is not None:
        if state is None:
            console.print(f"down; objects in {home / 'data'}")
            return 1
        server = S3Server(home)  # reads the recorded port and keys; does not start anything
        console.print(f"up at {state['endpoint']} (PID {state['pid']}); objects in {server.data_dir}")
        _print_exports(server)
        return 0
    with console.status("starting S3Proxy (filesystem backend)"):
        server = S3Server(home, port=args.port).start()
    server.save_state()
    for bucket in args.bucket or []:
        server.create_bucket(bucket)
    console.print(
        f"S3 API up at {server.endpoint} (PID {server.pid}); objects in {server.data_dir}; log {server.log_path}"
    )
    _print_exports(server)
    return 0


def _print_exports(server: S3Server) -> None:
    """The AWS variables for this local server (made-up keys, local only): paste them into a shell."""
    for name, value in server.client_env().items():
        console.print(f"export {name}={value}", soft_wrap=True)


def cmd_stream(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from monitoring.health import Health, OpsServer
    from monitoring.metrics import ScoringMetrics
    from streaming.consumer import score_stream
    from streaming.topics import ensure_topics

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    settings = _stream_settings(args, settings)
    metrics, health = ScoringMetrics(), Health()
    models, shadow = _watchers(settings, args.model, args.shadow, metrics)
    ensure_topics(settings, *_stream_topics(settings, shadow=args.shadow is not None))
    server = None
    port = args.metrics_port if args.metrics_port is not None else settings.metrics_port
    if port is not None:
        server = OpsServer(metrics.registry, health, port=port).start()
    consumer = score_stream(settings, models, shadow=shadow, metrics=metrics, health=health, client_id=args.client_id)
    following = f"following {models.ref}" if models.follows else "pinned"
    console.print(
        f"scoring {settings.features_topic} -> {settings.predictions_topic} (dead letters: {settings.dlq_topic}) "
        f"with model v{models.version} ({following}), group {settings.consumer_group}"
        + (f"; shadow {shadow.ref} v{shadow.version} -> {settings.shadow_topic}" if shadow else "")
        + (f"; metrics and health on {server.url}" if server else "")
        + "; Ctrl-C or SIGTERM to stop",
        soft_wrap=True,
    )
    try:
        stats = consumer.run(idle_exit_seconds=args.exit_when_idle)
    finally:
        if server is not None:
            server.stop()
    console.print(f"stopped cleanly: {stats.as_dict()}; live window in {settings.live_dir}", soft_wrap=True)
    for agreement in consumer.agreements.values():
        console.print(f"shadow agreement: {agreement.summary()}", soft_wrap=True)
    return 0


def _watchers(settings: Settings, model: str, shadow: str | None, metrics):
    """The champion's watcher (required) and the shadow's (optional), both feeding ``metrics``."""
    from scoring.watcher import ModelWatcher, feature_mismatch

    registry = Registry(settings.registry_dir)
    models = ModelWatcher(
        registry, model, check_seconds=settings.model_check_seconds, listeners=[metrics.on_reload]
    ).start()
    schema = models.current().bundle.schema  # events are shaped for the champion's features

    def compatible(candidate: Scorer) -> str | None:
        return feature_mismatch(schema, candidate.bundle.schema)

    models.compatible = compatible
    if shadow is None:
        return models, None
    watcher = ModelWatcher(
        registry,
        shadow,
        required=False,
        check_seconds=settings.model_check_seconds,
        compatible=compatible,
        listeners=[metrics.on_reload],
    ).start()
    return models, watcher


def _stream_topics(settings: Settings, *, shadow: bool) -> tuple[str, ...]:
    topics = (settings.features_topic, settings.predictions_topic, settings.dlq_topic)
    return (*topics, settings.shadow_topic) if shadow else topics


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from streaming.producer import produce
    from streaming.topics import ensure_topics

    settings = _stream_settings(args, settings)
    ensure_topics(settings)
    with _progress("producing") as progress:
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


# -- drift -----------------------------------------------------------------------------------

DRIFT_EXIT_CODE = 4


def cmd_drift(args: argparse.Namespace, settings: Settings) -> int:
    from drift.report import build_report

    since = _since(args.since) if args.since else None
    with console.status(f"building the Evidently drift report for {args.current}"):
        summary = build_report(args.current, args.out or settings.reports_dir, settings, model=args.model, since=since)
    print_drift(summary)
    from flows.drift_report import push_drift_figures

    push_drift_figures(settings, summary)
    return DRIFT_EXIT_CODE if summary.drift_detected else 0


def print_drift(summary) -> None:
    table = Table(title=f"drift of {summary.current} against model v{summary.model_version}'s training reference")
    for column in ("column", "test", "score", "threshold", "drifted"):
        table.add_column(column)
    for c in [*summary.features, *summary.predictions]:
        table.add_row(c.name, c.method, f"{c.score:.4f}", f"{c.threshold:g}", "[red]yes[/]" if c.drifted else "no")
    console.print(table)
    colour = "red" if summary.drift_detected else "green"
    console.print(f"[bold {colour}]{summary.headline()}[/]", soft_wrap=True)
    console.print(f"report: {summary.html}\nsummary: {summary.json_path}", soft_wrap=True)


def _since(text: str) -> datetime:
    """An ISO time, or a window back from now such as 30m, 6h, 2d."""
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import logging
    import os

    import uvicorn

    # One OpenMP thread per request: concurrent requests would otherwise fight over both cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    following = "following" if args.model in ("champion", "challenger", "latest") else "pinned to"
    auth = "API key required" if settings.api_key else "no API key"
    console.print(
        f"serving {following} {args.model} on http://{args.host}:{args.port} with {args.workers} worker(s) ({auth}): "
        f"/v2/models/{settings.serve_model_name}/infer, /predict, /predict_batch, /metrics",
        soft_wrap=True,
    )
    if args.workers > 1:
        import shutil

        # Every worker writes its metrics here, so any worker's /metrics reports the whole server.
        metrics_dir = settings.home / "serve-metrics" / str(args.port)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        os.environ.update({**settings.as_env(), "SCOREPIPE_SERVE_MODEL": args.model})
        uvicorn.run(
            "serving.app:app_from_env", factory=True, host=args.host, port=args.port, workers=args.workers,
            log_level="warning",
        )  # fmt: skip
        return 0
    from serving.app import build_app

    app, models = build_app(settings, args.model)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        models.stop()
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from scorepipe.status import print_status

    print_status(_stream_settings(args, settings), console)
    return 0


def cmd_performance(args: argparse.Namespace, settings: Settings) -> int:
    from performance.report import build_performance_report

    since = _since(args.since) if args.since else None
    with console.status(f"joining labels to {args.scored} and building the Evidently classification report"):
        summary = build_performance_report(
            args.scored,
            args.labels,
            args.out or settings.reports_dir,
            settings,
            id_column=args.id_column,
            label_column=args.label_column,
            since=since,
            name=args.name,
        )
    print_performance(summary)
    return DRIFT_EXIT_CODE if summary.degraded else 0


def print_performance(summary) -> None:
    table = Table(title=f"model performance on {summary.labelled_rows:,} labelled rows of {summary.scored}")
    for column in ("model", "rows", "AUC", "train", "prec", "recall", "F1", "logloss", "verdict"):
        table.add_column(column, justify="right", no_wrap=True)
    for v in summary.versions:
        table.add_row(
            f"v{v.model_version}",
            f"{v.rows:,}",
            "-" if v.roc_auc is None else f"{v.roc_auc:.3f}",
            "-" if v.training_roc_auc is None else f"{v.training_roc_auc:.3f}",
            f"{v.precision:.2f}",
            f"{v.recall:.2f}",
            f"{v.f1:.2f}",
            f"{v.log_loss:.3f}",
            "[red]degraded[/]" if v.degraded else "ok",
        )
    console.print(table)
    colour = "red" if summary.degraded else "green"
    console.print(f"[bold {colour}]{summary.headline()}[/]", soft_wrap=True)
    for v in summary.versions:
        for reason in v.reasons:
            console.print(f"  v{v.model_version}: {reason}", soft_wrap=True)
    if summary.unknown_label_ids or summary.labels_rejected:
        console.print(
            f"labels: {summary.unknown_label_ids:,} ids matched no scored row "
            f"(e.g. {summary.unknown_label_examples[:3]}); {summary.labels_rejected:,} set aside"
            + (f" in {summary.rejected_labels_path}" if summary.rejected_labels_path else ""),
            soft_wrap=True,
        )
    if summary.estimated is not None:
        gap = summary.realized_vs_estimated_roc_auc
        console.print(
            f"estimated from probabilities alone (CBPE, {int(summary.estimated['rows']):,} scored rows): ROC AUC "
            f"{summary.estimated['roc_auc']:.4f}, F1 {summary.estimated['f1']:.3f}"
            + (f"; realized minus estimated ROC AUC {gap:+.4f}" if gap is not None else ""),
            soft_wrap=True,
        )
    if summary.challenger is not None:
        print_outcomes(summary.challenger)
    console.print(f"report: {summary.html}\nsummary: {summary.json_path}", soft_wrap=True)


def cmd_labels(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from streaming.labels import LabelSink
    from streaming.topics import ensure_topics

    settings = _stream_settings(args, settings)
    ensure_topics(settings, args.topic)
    sink = LabelSink(settings, args.out, topic=args.topic)
    signal.signal(signal.SIGTERM, sink.stop)
    signal.signal(signal.SIGINT, sink.stop)
    console.print(f"appending labels from {args.topic} to {args.out}; Ctrl-C or SIGTERM to stop", soft_wrap=True)
    stats = sink.run(idle_exit_seconds=args.exit_when_idle)
    console.print(
        f"{stats.labels:,} labels in {stats.files} file(s) under {args.out}; {stats.rejected:,} messages set aside "
        f"in {args.out / '_rejected'}",
        soft_wrap=True,
    )
    return 0


def cmd_data_labels(args: argparse.Namespace, settings: Settings) -> int:
    from scorepipe.demo_data import write_labels

    path = write_labels(args.out, args.rows, seed=args.seed, drifted=args.drifted, fraction=args.fraction)
    console.print(
        f"wrote the true labels of {args.fraction:.0%} of {args.rows:,} transactions (seed {args.seed}) to {path}"
    )
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from scorepipe.demo import run_demo

    return run_demo(settings, console)


# -- parser ----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scorepipe", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    data = commands.add_parser("data", help="generate synthetic data").add_subparsers(title="data commands")
    generate = data.add_parser("generate", help="a labelled training set (or drifted / unlabelled data)")
    generate.add_argument("--rows", type=int, default=100_000)
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--seed", type=int, default=42)
    generate.add_argument("--drifted", action="store_true", help="shift amounts, channels, distances")
    generate.add_argument("--no-target", action="store_true", help="leave out the is_fraud label")
    generate.set_defaults(handler=cmd_data_generate)
    incoming = data.add_parser("incoming", help="a date partition of unlabelled Parquet files to score")
    incoming.add_argument("--out", type=Path, default=Path("data/incoming"))
    incoming.add_argument("--date", default=datetime.now(UTC).date().isoformat())
    incoming.add_argument("--files", type=int, default=4)
    incoming.add_argument("--rows", type=int, default=25_000, help="rows per file")
    incoming.add_argument("--seed", type=int, default=7)
    incoming.add_argument("--drifted", action="store_true")
    incoming.add_argument("--bad-rows", type=int, default=0, help="rows spoiled on purpose, spread over the files")
    incoming.add_argument("--corrupt", action="store_true", help="add one file that is not Parquet")
    incoming.set_defaults(handler=cmd_data_incoming)
    labels = data.add_parser(
        "labels", help="the delayed true labels of generated transactions (the generator knows them)"
    )
    labels.add_argument("--out", type=Path, required=True, help="a Parquet file: transaction_id, label, label_time")
    labels.add_argument(
        "--rows", type=int, default=100_000, help="as many rows as `data incoming` wrote (files x rows)"
    )
    labels.add_argument("--seed", type=int, default=7, help="the seed `data incoming` used")
    labels.add_argument("--drifted", action="store_true")
    labels.add_argument("--fraction", type=float, default=1.0, help="share of rows whose label has arrived, 0..1")
    labels.set_defaults(handler=cmd_data_labels)

    train = commands.add_parser("train", help="fit, register and (if it passes the gate) promote a model")
    train.add_argument("--rows", type=int, default=100_000, help="synthetic rows when no --data is given")
    train.add_argument("--data", type=Path, help="your own Parquet training data")
    train.add_argument("--target", help="label column of --data")
    train.add_argument("--note", default="")
    train.add_argument("--no-promote", action="store_true", help="register only")
    train.set_defaults(handler=cmd_train)

    models = commands.add_parser("models", help="manage the model registry").add_subparsers(title="models commands")
    listing = models.add_parser("list", help="registered versions and aliases")
    listing.set_defaults(handler=cmd_models_list)
    show = models.add_parser("show", help="one version's schema, metrics and hashes")
    show.add_argument("ref", nargs="?", default="champion")
    show.set_defaults(handler=cmd_models_show)
    promote = models.add_parser("promote", help="point an alias at a version")
    promote.add_argument("ref")
    promote.add_argument("--alias", default="champion", choices=["champion", "challenger"])
    promote.set_defaults(handler=cmd_models_promote)
    rollback = models.add_parser("rollback", help="point an alias back at its previous version")
    rollback.add_argument("--alias", default="champion", choices=["champion", "challenger"])
    rollback.set_defaults(handler=cmd_models_rollback)
    register = models.add_parser("register", help="register your own fitted sklearn classifier")
    register.add_argument("model", type=Path, help="a joblib file holding a fitted estimator or pipeline")
    register.add_argument("--reference", type=Path, required=True, help="training features (Parquet)")
    register.add_argument("--target", help="label column in --reference, to compute metrics")
    register.add_argument("--alias", choices=["champion", "challenger"], help="promote after registering")
    register.add_argument("--note", default="")
    register.set_defaults(handler=cmd_models_register)

    score = commands.add_parser("score", help="score Parquet files now, without a Prefect server")
    score.add_argument("input", help="a Parquet file, a folder of partitions or a glob (local or s3://bucket/prefix)")
    score.add_argument("output", help="output folder (or s3://bucket/prefix)")
    score.add_argument("--model", default="champion", help="alias or version")
    score.add_argument("--chunk-size", type=int)
    score.add_argument("--force", action="store_true", help="re-score files whose output is current")
    score.add_argument("--shadow", help="also score with this alias or version (e.g. challenger) into _shadow/")
    score.add_argument(
        "--workers",
        type=int,
        help="score files in parallel on a Dask LocalCluster of N single-threaded workers (0: one per core; "
        "default: SCOREPIPE_BATCH_WORKERS or 1, one after another)",
    )
    score.add_argument("--dask-address", help="use an existing Dask scheduler instead (tcp://host:8786)")
    score.set_defaults(handler=cmd_score)

    compare = commands.add_parser("compare", help="champion vs shadow challenger on scored outputs or a live window")
    compare.add_argument("scored", help="champion outputs: a batch output folder/partition or a live window (or s3://)")
    compare.add_argument("--shadow", help="the challenger's outputs (default: the _shadow/ twin)")
    compare.add_argument("--out", help="JSON summary (default: SCOREPIPE_HOME/reports/compare-NAME.json)")
    compare.add_argument("--labels", help="label Parquet: also judge both on outcomes (ROC AUC, bootstrap 95%% CI)")
    compare.add_argument("--id-column", help="id to join labels on (default: event_id or transaction_id)")
    compare.add_argument("--label-column", default="label")
    compare.set_defaults(handler=cmd_compare)

    kafka = commands.add_parser("kafka", help="a local Apache Kafka broker (KRaft) for development")
    kafka.add_argument("action", choices=["up", "down", "status"])
    kafka.add_argument("--port", type=int, default=9092, help="listener port on 127.0.0.1 (up)")
    kafka.add_argument(
        "--reset", action="store_true", help="up: delete the broker's data (topics, offsets) and format it afresh"
    )
    kafka.set_defaults(handler=cmd_kafka)

    s3 = commands.add_parser("s3", help="a local S3 API server (S3Proxy, filesystem backend) for development")
    s3.add_argument("action", choices=["up", "down", "status"])
    s3.add_argument("--port", type=int, help="listener port on 127.0.0.1 (up; default: a free port, then kept)")
    s3.add_argument("--bucket", action="append", help="up: create this bucket (repeatable)")
    s3.set_defaults(handler=cmd_s3)

    def stream_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--bootstrap-servers", help="default: SCOREPIPE_KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092")
        p.add_argument("--group", help="consumer group (default: scorepipe)")

    stream = commands.add_parser("stream", help="score the features topic in real time")
    stream_options(stream)
    stream.add_argument("--model", default="champion", help="alias or version")
    stream.add_argument("--batch-events", type=int, help="most events per micro-batch")
    stream.add_argument("--batch-ms", type=int, help="longest wait to fill a micro-batch")
    stream.add_argument("--shadow", help="also score with this alias or version (e.g. challenger), to the shadow topic")
    stream.add_argument("--shadow-topic", help="default: SCOREPIPE_SHADOW_TOPIC or predictions.shadow")
    stream.add_argument(
        "--metrics-port", type=int, help="serve /metrics, /healthz, /readyz on 127.0.0.1:PORT (0: any free port)"
    )
    stream.add_argument("--client-id", default="scorepipe-stream")
    stream.add_argument("--exit-when-idle", type=float, help="stop after this many seconds without events")
    stream.set_defaults(handler=cmd_stream)

    producer = commands.add_parser("produce", help="send synthetic demo events to the features topic")
    stream_options(producer)
    producer.add_argument("--count", type=int, default=10_000)
    producer.add_argument("--rate", type=float, default=0.0, help="events per second (0: as fast as possible)")
    producer.add_argument("--seed", type=int, default=7)
    producer.add_argument("--drifted", action="store_true")
    producer.add_argument("--malformed", type=float, default=0.0, help="share of malformed events, 0..1")
    producer.set_defaults(handler=cmd_produce)

    drift = commands.add_parser("drift", help="Evidently drift report of scored data against the training reference")
    drift.add_argument(
        "--current", required=True, help="scored Parquet: a file, a partition folder, a glob, a live window"
    )
    drift.add_argument("--since", help="only rows scored since: ISO time or 30m / 6h / 2d (live windows)")
    drift.add_argument("--model", help="version or alias (default: the version that scored the data)")
    drift.add_argument("--out", help="output folder or s3://bucket/prefix (default: SCOREPIPE_HOME/reports)")
    drift.set_defaults(handler=cmd_drift)

    serve = commands.add_parser("serve", help="online scoring over HTTP: Open Inference Protocol V2 and JSON")
    serve.add_argument("--model", default="champion", help="alias to follow (hot reload) or version to pin")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.set_defaults(handler=cmd_serve)

    label_sink = commands.add_parser("labels", help="append delayed labels from a Kafka topic to label files")
    stream_options(label_sink)
    label_sink.add_argument("--topic", default="labels", help='JSON {"event_id": ..., "label": ...} messages')
    label_sink.add_argument("--out", type=Path, default=Path("data/labels/stream"))
    label_sink.add_argument("--exit-when-idle", type=float, help="stop after this many seconds without messages")
    label_sink.set_defaults(handler=cmd_labels)

    performance = commands.add_parser("performance", help="model quality on scored rows whose labels arrived")
    performance.add_argument("--scored", required=True, help="scored Parquet: batch outputs or a live window")
    performance.add_argument("--labels", required=True, help="label Parquet: a file, folder or glob")
    performance.add_argument("--id-column", help="id to join on (default: event_id or transaction_id)")
    performance.add_argument("--label-column", default="label")
    performance.add_argument("--since", help="only rows scored since: ISO time or 30m / 6h / 7d")
    performance.add_argument("--out", help="output folder or s3://bucket/prefix (default: SCOREPIPE_HOME/reports)")
    performance.add_argument("--name", help="report name: performance-NAME.html/.json (default: the scored folder's)")
    performance.set_defaults(handler=cmd_performance)

    status = commands.add_parser("status", help="registry aliases, consumer group lag, last flow runs")
    stream_options(status)
    status.set_defaults(handler=cmd_status)

    demo = commands.add_parser("demo", help="the whole job end to end on embedded defaults")
    demo.set_defaults(handler=cmd_demo)
    return parser


if __name__ == "__main__":
    sys.exit(main())
