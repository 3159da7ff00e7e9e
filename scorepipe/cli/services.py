"""``scorepipe kafka``, ``s3``, ``status`` and ``demo``: local servers for development, and the overview."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scorepipe.cli.options import kafka_options, stream_settings
from scorepipe.render import console

if TYPE_CHECKING:
    from scorepipe.settings import Settings


@dataclass(frozen=True)
class LocalServerCommand:
    """How ``scorepipe NAME up|down|status`` treats one local server; the steps are the same for all."""

    title: str  # as printed
    folder: str  # under SCOREPIPE_HOME
    server_class: Callable[[], Any]  # the LocalServer subclass, imported only when its command runs
    kept: Callable[[Path], str]  # what stays on disk after ``down``
    start: Callable[[argparse.Namespace, Path], Any]  # the started server
    show: Callable[[dict, Path], list[str]]  # how to reach a running one (from its recorded state)
    refuse_up: Callable[[argparse.Namespace, dict], str | None] = lambda args, state: None


def cmd_local_server(args: argparse.Namespace, settings: Settings) -> int:
    """``up`` starts the server and leaves it running; ``down`` stops it by its recorded PID; ``status`` says which."""
    command: LocalServerCommand = args.local_server
    server_class = command.server_class()
    home = settings.home / command.folder
    state = server_class.read_state(home)
    if args.action == "down":
        stopped = server_class.stop_detached(home)
        console.print(
            f"stopped {command.title} PID {stopped['pid']}" if stopped else f"no {command.title} recorded as up"
        )
        console.print(command.kept(home), soft_wrap=True)
        return 0
    if state is not None:
        if args.action == "up" and (refusal := command.refuse_up(args, state)):
            console.print(refusal, soft_wrap=True)
            return 1
        console.print(("already up" if args.action == "up" else "up") + f" (PID {state['pid']})", soft_wrap=True)
        for line in command.show(state, home):
            console.print(line, soft_wrap=True)
        return 0
    if args.action == "status":
        console.print(f"down; {command.kept(home)}", soft_wrap=True)
        return 1
    with console.status(f"starting {command.title}"):
        server = command.start(args, home)
    server.save_state()
    console.print(f"{command.title} up (PID {server.pid}); log {server.log_path}", soft_wrap=True)
    for line in command.show(server.describe(), home):
        console.print(line, soft_wrap=True)
    return 0


def _kafka_broker() -> Any:
    from devservers.kafka import KafkaBroker

    return KafkaBroker


def _s3_server() -> Any:
    from devservers.s3 import S3Server

    return S3Server


def _mlflow_server() -> Any:
    from devservers.mlflow import MLflowServer

    return MLflowServer


def _start_kafka(args: argparse.Namespace, home: Path) -> Any:
    from devservers.kafka import KafkaBroker, read_identity

    kept = bool(read_identity(home)) and not args.reset
    broker = KafkaBroker(home, port=args.port, reset=args.reset, secure=args.secure).start()
    what = "kept from the last run" if kept else "new (formatted now)"
    console.print(f"data: {broker.data_dir} ({what}; cluster {broker.cluster_id})", soft_wrap=True)
    return broker


def _show_kafka(state: dict, home: Path) -> list[str]:
    """How to reach the broker (the properties files hold the generated password; it is never printed)."""
    from devservers.kafka import CLIENT_USER, MTLS_USER

    lines = [f"at {state['bootstrap_servers']}"]
    if not state.get("sasl_bootstrap_servers"):
        return [*lines, f"export SCOREPIPE_KAFKA_BOOTSTRAP_SERVERS={state['bootstrap_servers']}"]
    return [
        *lines,
        f"SASL_SSL at {state['sasl_bootstrap_servers']}, mutual TLS at {state['mtls_bootstrap_servers']}; "
        f"client properties in {home}",
        f"SASL_SSL (SCRAM-SHA-512, user {CLIENT_USER}); mutual TLS (certificate CN={MTLS_USER}); "
        f"PLAINTEXT at {state['bootstrap_servers']} is the broker's own listener (a super user: development only)",
        f"test CA: {state['ca_file']}; ACLs enforced (StandardAuthorizer)",
        "use it with:",
        f"  export SCOREPIPE_KAFKA_CONFIG={state['client_properties']}",
        f"  or --kafka-config {state['mtls_properties']} for mutual TLS",
    ]


def _kafka_kept(home: Path) -> str:
    from devservers.kafka import read_identity

    identity = read_identity(home)
    if not identity:
        return f"no data yet in {home}"
    return (
        f"data in {identity['data_dir']} (cluster {identity['cluster_id']}; `scorepipe kafka up --reset` starts afresh)"
    )


def _start_s3(args: argparse.Namespace, home: Path) -> Any:
    from devservers.s3 import S3Server

    server = S3Server(home, port=args.port).start()
    for bucket in args.bucket or []:
        server.create_bucket(bucket)
    return server


def _show_s3(state: dict, home: Path) -> list[str]:
    """The endpoint and the AWS variables for this local server (made-up keys, local only), to paste into a shell."""
    from devservers.s3 import S3Server

    server = S3Server(home)  # reads the recorded port and keys; starts nothing
    return [f"at {state['endpoint']}; objects in {server.data_dir}"] + [
        f"export {name}={value}" for name, value in server.client_env().items()
    ]


def _start_mlflow(args: argparse.Namespace, home: Path) -> Any:
    from devservers.mlflow import MLflowServer

    return MLflowServer(home, port=args.port).start()


LOCAL_SERVERS = {
    "kafka": LocalServerCommand(
        title="Kafka",
        folder="kafka",
        server_class=_kafka_broker,
        kept=_kafka_kept,
        start=_start_kafka,
        show=_show_kafka,
        refuse_up=lambda args, state: (
            f"Kafka is up at {state['bootstrap_servers']}: `scorepipe kafka down` before --reset"
            if args.reset
            else None
        ),
    ),
    "s3": LocalServerCommand(
        title="S3Proxy",
        folder="s3",
        server_class=_s3_server,
        kept=lambda home: f"objects kept in {home / 'data'}",
        start=_start_s3,
        show=_show_s3,
    ),
    "mlflow": LocalServerCommand(
        title="MLflow",
        folder="mlflow",
        server_class=_mlflow_server,
        kept=lambda home: f"runs and models kept in {home}",
        start=_start_mlflow,
        show=lambda state, home: [
            f"at {state['tracking_uri']}; store and artifacts in {home}",
            f"export MLFLOW_TRACKING_URI={state['tracking_uri']}",
        ],
    ),
}


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from scorepipe.status import print_status

    print_status(stream_settings(args, settings), console)
    return 0


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    """Evidently's UI over the workspace every drift and performance report is added to, until Ctrl-C."""
    from devservers.evidently import EvidentlyUI
    from reports.workspace import ReportWorkspace

    ReportWorkspace(settings.workspace_dir)  # a clear error for an unusable workspace, before the UI starts
    log_path = settings.home / "logs" / "evidently-ui.log"
    ui = EvidentlyUI(settings.workspace_dir, port=args.port, host=args.host, log_path=log_path).start()
    console.print(
        f"Evidently UI on http://{args.host}:{ui.port} over {settings.workspace_dir} (log {ui.log_path}); "
        "Ctrl-C to stop",
        soft_wrap=True,
    )
    try:
        assert ui.process is not None
        return ui.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        ui.stop()


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from scorepipe.demo import run_demo

    return run_demo(settings, console, mlflow=args.mlflow)


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``scorepipe`` parser."""
    kafka = commands.add_parser("kafka", help="a local Apache Kafka broker (KRaft) for development")
    kafka.add_argument("action", choices=["up", "down", "status"])
    kafka.add_argument("--port", type=int, default=9092, help="listener port on 127.0.0.1 (up)")
    kafka.add_argument(
        "--reset", action="store_true", help="up: delete the broker's data (topics, offsets) and format it afresh"
    )
    kafka.add_argument(
        "--secure",
        action="store_true",
        help="up: also SASL_SSL (SCRAM-SHA-512) and mutual-TLS listeners with a test CA, users and ACLs; "
        "writes client properties files for --kafka-config",
    )
    kafka.set_defaults(handler=cmd_local_server, local_server=LOCAL_SERVERS["kafka"])

    s3 = commands.add_parser("s3", help="a local S3 API server (S3Proxy, filesystem backend) for development")
    s3.add_argument("action", choices=["up", "down", "status"])
    s3.add_argument("--port", type=int, help="listener port on 127.0.0.1 (up; default: a free port, then kept)")
    s3.add_argument("--bucket", action="append", help="up: create this bucket (repeatable)")
    s3.set_defaults(handler=cmd_local_server, local_server=LOCAL_SERVERS["s3"])

    mlflow = commands.add_parser("mlflow", help="a local MLflow tracking server (SQLite store, local artifacts)")
    mlflow.add_argument("action", choices=["up", "down", "status"])
    mlflow.add_argument("--port", type=int, help="listener port on 127.0.0.1 (up; default: a free port, then kept)")
    mlflow.set_defaults(handler=cmd_local_server, local_server=LOCAL_SERVERS["mlflow"])

    ui = commands.add_parser("ui", help="Evidently's UI: drift and performance across nights (the workspace)")
    ui.add_argument("--port", type=int, default=8000)
    ui.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 in a container)")
    ui.set_defaults(handler=cmd_ui)

    status = commands.add_parser("status", help="registry aliases, consumer group lag, last flow runs")
    kafka_options(status)
    status.set_defaults(handler=cmd_status)

    demo = commands.add_parser("demo", help="the whole job end to end on embedded defaults")
    demo.add_argument(
        "--mlflow",
        action="store_true",
        help="also run a local MLflow server: models logged there, the consumer following its alias, reports as runs",
    )
    demo.set_defaults(handler=cmd_demo)
