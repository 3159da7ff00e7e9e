"""``make demo``: the whole job end to end on embedded defaults, stopping everything it started.

Train and register a champion and a challenger; write a night of partitions (with bad rows and a
corrupt file) and score it through ``prefect deployment run`` on a real Prefect server, worker
and deployment; stream 10,000 events through a real Kafka broker while promoting and rolling back;
write drift and performance reports for a clean and a drifted night.

With ``--mlflow`` it also starts a local MLflow tracking server, logs both models there, has the
consumer follow the MLflow alias ``champion`` (moved to the challenger and back mid-stream
instead of the local alias), and logs the reports as runs beside the model versions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from devservers.prefect import PrefectServer, prefect_worker, run_prefect
from devservers.process import ManagedProcess
from scorepipe.demo_data import write_incoming
from scorepipe.render import short_reason
from scorepipe.settings import Settings
from scoring import Registry, synthetic
from scoring.layout import QUARANTINE_DIR, REJECTED_DIR
from scoring.training import check_quality_gate, train_bundle

REPO = Path(__file__).resolve().parent.parent
POOL = "scorepipe-process"
DEPLOYMENT = "score-batch/nightly"


def run_demo(settings: Settings, console: Console, *, mlflow: bool = False) -> int:
    if not mlflow:
        return _run(settings.model_copy(update={"mlflow_log": False}), console, None)
    from devservers.mlflow import MLflowServer

    home = settings.home / "mlflow-demo"
    shutil.rmtree(home, ignore_errors=True)  # a fresh server each run, as the broker: its runs are this run's
    with console.status("starting the MLflow tracking server (its venv is built under .cache on first use)"):
        server = MLflowServer(home).start()
    try:
        console.print(f"MLflow at {server.tracking_uri} (PID {server.pid}): open it to see the runs and models")
        tracked = settings.model_copy(
            update={"mlflow_tracking_uri": server.tracking_uri, "mlflow_log": True, "mlflow_model_name": DEMO_MODEL}
        )
        return _run(tracked, console, server.tracking_uri)
    finally:
        server.stop()
        console.print("stopped the MLflow server (its runs and models stay in " + str(server.home) + ")")


DEMO_MODEL = "scorepipe-demo"  # the registered MLflow model of `demo --mlflow`


def _run(settings: Settings, console: Console, tracking: str | None) -> int:
    data = REPO / "data"
    day = datetime.now(UTC).date().isoformat()
    incoming = data / "incoming"
    scored = data / "scored"

    console.rule("[bold]1. train and register a model" + (", logged to MLflow" if tracking else ""))
    registry = Registry(settings.registry_dir)
    champion = _train_and_promote(registry, settings, console, alias="champion", drifted=False)
    challenger = _train_and_promote(registry, settings, console, alias="challenger", drifted=True)
    console.print(f"v{champion} is champion; v{challenger} (trained on drifted data) is challenger, scored in shadow")

    console.rule(f"[bold]2. a night of incoming data: {incoming / f'date={day}'}")
    paths = write_incoming(
        incoming / f"date={day}", files=4, rows_per_file=25_000, seed=7, bad_rows=12, corrupt_file=True
    )
    console.print(f"{len(paths)} files: 100,000 rows with 12 bad rows, and 1 corrupt file")

    console.rule("[bold]3. Prefect: server, work pool, deployment, worker")
    server = PrefectServer(settings.home / "prefect")
    worker = None
    try:
        with console.status("starting the Prefect server (about 10 s on a new database)"):
            server.start()
        env = server.client_env()
        console.print(f"Prefect server at {server.api_url} (PID {server.pid}); UI at http://127.0.0.1:{server.port}")
        run_prefect(["work-pool", "create", POOL, "--type", "process", "--overwrite"], env=env, cwd=REPO)
        run_prefect(["--no-prompt", "deploy", "--all"], env=env, cwd=REPO)
        worker = prefect_worker(server, POOL, cwd=REPO).start()
        console.print(f"deployed {DEPLOYMENT} (nightly at 02:15 UTC); worker PID {worker.pid}")

        console.rule(f"[bold]4. prefect deployment run '{DEPLOYMENT}'")
        with console.status("running score-batch through the worker"):
            output = run_prefect(
                [
                    "deployment",
                    "run",
                    DEPLOYMENT,
                    "-p",
                    f"input={incoming}",
                    "-p",
                    f"output={scored}",
                    "-p",
                    "force=true",
                    "-p",
                    "shadow=challenger",
                    "--watch",
                    "--watch-timeout",
                    "600",
                ],
                env=env,
                cwd=REPO,
                timeout=660,
            )
        match = re.search(r"UUID:\s*([0-9a-f-]{36})", output)
        console.print(f"flow run {match.group(1) if match else '?'} completed")
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        console.print("stopped the worker and the server")

    console.rule("[bold]5. results")
    _print_results(console, scored, day)
    _print_agreement(console, scored / f"date={day}")

    console.rule("[bold]6. real time: Kafka broker, stream consumer, 10,000 events")
    _stream_act(settings, console, tracking)

    console.rule("[bold]7. drift: Evidently reports for a clean and a drifted batch")
    _drift_act(settings, console, data, day)

    console.rule("[bold]8. performance: the delayed labels of both nights joined to their scores")
    _performance_act(settings, console, data, day)

    console.rule("[bold]9. canary releases judged on live traffic: one promoted, one rolled back")
    from scorepipe.demo_canary import canary_act

    canary_act(settings, console)
    return 0


def _performance_act(settings: Settings, console: Console, data: Path, day: str) -> None:
    """Half of tonight's labels and all of the drifted night's arrive; judge the model on each."""
    from performance.report import build_performance_report
    from scorepipe.demo_data import write_labels
    from scorepipe.render import print_performance

    nights = (
        ("clean", data / "scored" / f"date={day}", dict(rows=100_000, seed=7, fraction=0.5)),
        ("drifted", data / "scored-drifted" / f"date={day}", dict(rows=50_000, seed=8, drifted=True)),
    )
    for label, scored, truth in nights:
        labels = write_labels(data / "labels" / label / f"date={day}" / "labels.parquet", **truth)
        with console.status(f"joining the {label} night's labels and building the Evidently report"):
            summary = build_performance_report(scored, labels.parent, data / "reports", settings, name=f"{label}-{day}")
        print_performance(summary)
        _published(console, settings, "performance-report", summary)


def _train_and_promote(registry: Registry, settings: Settings, console: Console, *, alias: str, drifted: bool) -> int:
    """Train the default pipeline on 100,000 synthetic (or drifted) transactions, gate it, promote it."""
    kind = "drifted " if drifted else ""
    with console.status(f"training on 100,000 {kind}synthetic card transactions"):
        frame = synthetic.generate(100_000, seed=settings.seed + int(drifted), drifted=drifted)
        bundle = train_bundle(
            frame,
            synthetic.TARGET,
            features=list(synthetic.FEATURES),
            bounds=synthetic.BOUNDS,
            reference_rows=settings.reference_rows,
            seed=settings.seed,
            source=f"synthetic demo{', drifted' if drifted else ''}",
        )
    from integrations.mlflow.tracking import log_trained, tag_version

    logged = log_trained(settings, bundle, data_source="synthetic demo", train_rows=len(frame))
    if logged is not None:
        bundle = bundle.with_info(mlflow=logged.lineage())
    version = registry.register(
        bundle,
        note=f"make demo {alias}",
        origin=logged.source.origin() if logged else None,
        trees=settings.tree_compiler(),
    )
    check_quality_gate(bundle.metrics, settings.min_roc_auc)
    registry.promote(version, alias)
    console.print(f"v{version}: roc_auc {bundle.metrics['roc_auc']:.4f}, passed the gate, now {alias}")
    if logged is not None:
        tag_version(settings, logged, local_version=version, passed=True, alias=alias)
        console.print(
            f"  logged to MLflow: {logged.source.name} v{logged.source.version}, alias {alias}; run {logged.url}",
            soft_wrap=True,
        )
    return version


def _drift_act(settings: Settings, console: Console, data: Path, day: str) -> None:
    """Report on tonight's clean batch, then on a drifted batch from the same generator."""
    from drift.report import build_report
    from flows.score_batch import score_batch
    from scorepipe.render import print_drift

    drifted_in = data / "incoming-drifted" / f"date={day}"
    write_incoming(drifted_in, files=2, rows_per_file=25_000, seed=8, drifted=True)
    score_batch.fn(input=str(drifted_in), output=str(data / "scored-drifted"), force=True)
    reports = data / "reports"
    paths = []
    for label, current in (
        ("clean", data / "scored" / f"date={day}"),
        ("drifted", data / "scored-drifted" / f"date={day}"),
    ):
        with console.status(f"Evidently report for the {label} batch"):
            summary = build_report(current, reports, settings, name=f"{label}-{day}")
        print_drift(summary)
        _published(console, settings, "drift-report", summary)
        paths.append(summary.html)
    console.print("[bold]open in a browser:[/]")
    for path in paths:
        console.print(f"  {path}")
    console.print(f"the trend across nights: `scorepipe ui` (Evidently's UI over {settings.workspace_dir})")


def _published(console: Console, settings: Settings, job: str, summary: Any) -> None:
    """Push and log a report as ``scorepipe drift`` and ``performance`` do (nothing when neither is set up)."""
    from monitoring.publish import publish_report

    run_id = publish_report(settings, job, summary)
    if run_id:
        console.print(f"  logged to MLflow as run {run_id}, tied to the model version it judged")


def _print_agreement(console: Console, scored: Path) -> None:
    from scoring.compare import compare_outputs

    for pair in compare_outputs(scored):
        s = pair.summary()
        console.print(
            f"shadow: challenger v{s['challenger_version']} against champion v{s['champion_version']} on "
            f"{s['rows_compared']:,} rows: label agreement {s['label_agreement']:.4f}, mean |Δp| "
            f"{s['mean_abs_proba_diff']:.4f}, p95 |Δp| {s['p95_abs_proba_diff']:.3f} "
            f"(`scorepipe compare {scored}`)",
            soft_wrap=True,
        )


def _stream_act(settings: Settings, console: Console, tracking: str | None) -> None:
    """Broker, consumer with a shadow challenger, 10,000 events; promote and roll back mid-stream.

    The counts at the end show every event predicted or dead-lettered once, by which version. With
    MLflow the consumer follows the MLflow aliases, and the moves are made there.
    """
    from devservers.kafka import KafkaBroker
    from devservers.process import free_port, http_ok
    from streaming.producer import produce
    from streaming.topics import all_committed, count_messages, distinct_keys, ensure_topics

    with console.status("starting Apache Kafka (KRaft, single node; jars from Maven Central on first use)"):
        # A fresh broker each run: the demo's counts are of this run's events only.
        broker = KafkaBroker(settings.home / "kafka-demo", reset=True).start()
    consumer = None
    try:
        stream = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers})
        console.print(f"Kafka at {broker.bootstrap_servers} (PID {broker.pid})")
        ensure_topics(stream)
        ensure_topics(stream, stream.shadow_topic)
        env = {**os.environ, **stream.as_env()}
        port = free_port()
        models = ["--shadow", "challenger"]
        if tracking:
            models = [
                "--model",
                f"mlflow:models:/{DEMO_MODEL}@champion",
                "--shadow",
                f"mlflow:models:/{DEMO_MODEL}@challenger",
            ]
        consumer = ManagedProcess(
            "scorepipe stream",
            [sys.executable, "-m", "scorepipe.cli", "stream", *models, "--metrics-port", str(port)],
            env=env,
            log_path=settings.home / "logs" / "stream-demo.log",
        ).start()
        metrics_url = f"http://127.0.0.1:{port}"
        consumer.wait_until(lambda: http_ok(f"{metrics_url}/readyz"), timeout=60, what="ready")
        console.print(
            f"consumer PID {consumer.pid} scoring {stream.features_topic} -> {stream.predictions_topic}, "
            f"challenger in shadow -> {stream.shadow_topic}; {metrics_url}/readyz answers 200"
            + (f"; following MLflow {DEMO_MODEL}@champion" if tracking else ""),
            soft_wrap=True,
        )
        registry = Registry(settings.registry_dir)
        champion, challenger = registry.resolve("champion"), registry.resolve("challenger")
        moves: _AliasMoves = (
            _MLflowAliasMoves(registry, champion, challenger, console, tracking)
            if tracking
            else _AliasMoves(registry, champion, challenger, console)
        )
        with console.status("producing 10,000 events at 2,000/s, 2% malformed; promoting mid-stream"):
            sent = produce(
                stream, count=10_000, rate=2_000, seed=2026, malformed_share=0.02, on_progress=moves.on_progress
            )

        # Every event is handled once its offset is committed: the consumer commits only what was
        # predicted or dead-lettered and acknowledged (counting messages would count duplicates too).
        with console.status("waiting for every event to be scored or dead-lettered"):
            consumer.wait_until(lambda: all_committed(stream), timeout=120, what="done with all events")
        metrics = _scrape(f"{metrics_url}/metrics")
        consumer.stop()
        shown = (
            "scorepipe_model_reloads_total",
            "scorepipe_model_reload_failures_total",
            "agreement_ratio",
            "rows_compared",
        )
        console.print("metrics at the end (from /metrics):")
        for name, value in metrics.items():
            if any(s in name for s in shown):
                console.print(f"  {name} {value:g}", soft_wrap=True)
        predicted = len(distinct_keys(stream, stream.predictions_topic))
        dead = len(distinct_keys(stream, stream.dlq_topic))
        messages = count_messages(stream, stream.predictions_topic) + count_messages(stream, stream.dlq_topic)
        table = Table(title="stream results")
        for column in ("events sent", "malformed sent", "predicted", "dead-lettered", "duplicates", "consumer exit"):
            table.add_column(column)
        exit_code = consumer.process.returncode if consumer.process else None
        table.add_row(
            f"{sent.sent:,}",
            f"{sent.malformed:,}",
            f"{predicted:,}",
            f"{dead:,}",
            f"{messages - predicted - dead:,}",
            str(exit_code),
        )
        console.print(table)
        console.print(_dead_letter_reasons(stream))
        console.print(_versions_table(stream))
        console.print(f"live window for drift: {settings.live_dir}; consumer log: {consumer.log_path}")
    finally:
        if consumer is not None:
            consumer.stop()
        broker.stop()
        console.print("stopped the consumer and the broker")


class _AliasMoves:
    """Promote the challenger to champion a third of the way through the events, roll back at two thirds."""

    def __init__(self, registry: Registry, champion: int, challenger: int, console: Console) -> None:
        self.registry, self.champion, self.challenger, self.console = registry, champion, challenger, console
        self.sent = 0

    def on_progress(self, n: int) -> None:
        before, self.sent = self.sent, self.sent + n
        if before < 3_333 <= self.sent:
            self.promote()
        if before < 6_666 <= self.sent:
            self.roll_back()

    def promote(self) -> None:
        self.registry.promote(self.challenger, "champion")
        self.console.print(f"after {self.sent:,} events: `models promote v{self.challenger}` (no restart)")

    def roll_back(self) -> None:
        self.registry.rollback("champion")
        self.console.print(f"after {self.sent:,} events: `models rollback` to v{self.champion}")


class _MLflowAliasMoves(_AliasMoves):
    """The same moves made on the MLflow alias: what a team's training job or reviewer would do there."""

    def __init__(self, registry: Registry, champion: int, challenger: int, console: Console, tracking: str) -> None:
        from integrations.mlflow.client import mlflow_client

        super().__init__(registry, champion, challenger, console)
        self.client = mlflow_client(tracking)
        self.versions = {v: str(registry.info(v).origin["version"]) for v in (champion, challenger)}  # type: ignore[index]

    def promote(self) -> None:
        self._move_to(self.challenger)

    def roll_back(self) -> None:
        self._move_to(self.champion)

    def _move_to(self, local: int) -> None:
        self.client.set_registered_model_alias(DEMO_MODEL, "champion", self.versions[local])
        self.console.print(
            f"after {self.sent:,} events: MLflow {DEMO_MODEL}@champion -> v{self.versions[local]} "
            f"(local v{local}; the consumer follows it, no restart)"
        )


def _scrape(url: str) -> dict[str, float]:
    """The scorepipe_ samples of a /metrics page."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the loopback URL we started
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("scorepipe_") and " " in line and "_created" not in line:
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def _versions_table(settings: Settings) -> Table:
    """Predictions per model version, in the order the versions served: the switch without a restart."""
    by_batch: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for headers in _all_headers(settings, settings.predictions_topic):
        version = headers["model_version"].decode()
        by_batch[headers["scored_at"].decode()] = version
        counts[version] += 1
    runs: list[str] = []
    for _, version in sorted(by_batch.items()):
        if not runs or runs[-1] != version:
            runs.append(version)
    table = Table(title="predictions by model version (served in the order " + " -> ".join(f"v{v}" for v in runs) + ")")
    table.add_column("model version")
    table.add_column("predictions", justify="right")
    for version, count in sorted(counts.items()):
        table.add_row(f"v{version}", f"{count:,}")
    return table


def _all_headers(settings: Settings, topic: str) -> list[dict[str, bytes]]:
    """The headers of every message on ``topic`` now, read from the beginning to its end offsets."""
    from streaming.topics import read_topic

    return [dict(message.headers or []) for message in read_topic(settings, topic)]


def _dead_letter_reasons(settings: Settings) -> Table:
    from streaming.events import DLQ_REASON

    reasons: Counter[str] = Counter()
    for headers in _all_headers(settings, settings.dlq_topic):
        reason = headers[DLQ_REASON].decode()
        reasons[re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "…", reason)] += 1
    table = Table(title="dead letters by reason")
    table.add_column("reason")
    table.add_column("count", justify="right")
    for reason, count in reasons.most_common():
        table.add_row(reason, str(count))
    return table


def _print_results(console: Console, scored: Path, day: str) -> None:
    table = Table(title=f"score-batch results for date={day}")
    for column in ("file", "scored rows", "rejected rows", "quarantined (full error in its .error.json)"):
        table.add_column(column, overflow="fold")
    partition = f"date={day}"
    names = sorted(
        {p.name for p in (scored / partition).glob("*.parquet")}
        | {p.name for p in (scored / QUARANTINE_DIR / partition).glob("*.parquet")}
    )
    for name in names:
        out = scored / partition / name
        rejects = scored / REJECTED_DIR / partition / name
        quarantine = scored / QUARANTINE_DIR / partition / name
        error = ""
        if quarantine.exists():
            error = short_reason(json.loads(quarantine.with_name(name + ".error.json").read_text())["error"])
        table.add_row(
            name,
            str(pq.ParquetFile(out).metadata.num_rows) if out.exists() else "-",
            str(pq.ParquetFile(rejects).metadata.num_rows) if rejects.exists() else "0",
            error,
        )
    console.print(table)
    console.print(f"scored: {scored / partition}")
    console.print(f"rejected rows with reasons: {scored / REJECTED_DIR / partition}")
    console.print(f"quarantined files with errors: {scored / QUARANTINE_DIR / partition}")
