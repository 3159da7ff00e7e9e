"""``scorepipe kafka``, ``s3``, ``status`` and ``demo``: local servers for development, and the overview."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from scorepipe.cli.options import kafka_options, stream_settings
from scorepipe.render import console

if TYPE_CHECKING:
    from scorepipe.s3_server import S3Server
    from scoring import Settings


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
            broker = KafkaBroker(home, port=args.port, reset=args.reset, secure=args.secure).start()
        broker.save_state()
        console.print(f"Kafka up at {broker.bootstrap_servers} (PID {broker.pid}); log {broker.log_path}")
        what = "kept from the last run" if kept else "new (formatted now)"
        console.print(f"data: {broker.data_dir} ({what}; cluster {broker.cluster_id})")
        if broker.secure:
            _print_secured(broker)
        else:
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
        if state.get("sasl_bootstrap_servers"):
            console.print(
                f"SASL_SSL at {state['sasl_bootstrap_servers']}, mutual TLS at {state['mtls_bootstrap_servers']}; "
                f"client properties in {home}"
            )
        return 0
    console.print(f"down{where}")
    return 1


def _print_secured(broker: object) -> None:
    """How to reach the secured listeners (the properties files hold the generated password; never printed)."""
    from scorepipe.kafka_broker import CLIENT_USER, MTLS_USER, KafkaBroker

    assert isinstance(broker, KafkaBroker)
    console.print(
        f"SASL_SSL (SCRAM-SHA-512, user {CLIENT_USER}) at {broker.sasl_bootstrap_servers}; "
        f"mutual TLS (certificate CN={MTLS_USER}) at {broker.mtls_bootstrap_servers}; "
        f"PLAINTEXT at {broker.bootstrap_servers} is the broker's own listener (a super user: development only)",
        soft_wrap=True,
    )
    console.print(f"test CA: {broker.ca_file}; ACLs enforced (StandardAuthorizer)")
    console.print("use it with:", soft_wrap=True)
    console.print(f"  export SCOREPIPE_KAFKA_CONFIG={broker.client_properties}", soft_wrap=True)
    console.print(f"  or --kafka-config {broker.mtls_properties} for mutual TLS", soft_wrap=True)


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


def cmd_mlflow(args: argparse.Namespace, settings: Settings) -> int:
    from scorepipe.mlflow_server import MLflowServer, read_state, stop_detached

    home = settings.home / "mlflow"
    state = read_state(home)
    if args.action == "down":
        stopped = stop_detached(home)
        console.print(f"stopped MLflow PID {stopped['pid']}" if stopped else "no MLflow server recorded as up")
        console.print(f"runs and models kept in {home}")
        return 0
    if args.action == "status" or state is not None:
        if state is None:
            console.print(f"down; runs and models in {home}")
            return 1
        console.print(f"up at {state['tracking_uri']} (PID {state['pid']}); store and artifacts in {home}")
        console.print(f"export MLFLOW_TRACKING_URI={state['tracking_uri']}")
        return 0
    with console.status("starting the MLflow tracking server (its own venv under .cache, built once)"):
        server = MLflowServer(home, port=args.port).start()
    server.save_state()
    console.print(f"MLflow up at {server.tracking_uri} (PID {server.pid}); store and artifacts in {home}; "
                  f"log {server.log_path}", soft_wrap=True)  # fmt: skip
    console.print(f"export MLFLOW_TRACKING_URI={server.tracking_uri}")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from scorepipe.status import print_status

    print_status(stream_settings(args, settings), console)
    return 0


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    """Evidently's UI over the workspace every drift and performance report is added to, until Ctrl-C."""
    from reports.workspace import ReportWorkspace
    from scorepipe.services import EvidentlyUI

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
    kafka.set_defaults(handler=cmd_kafka)

    s3 = commands.add_parser("s3", help="a local S3 API server (S3Proxy, filesystem backend) for development")
    s3.add_argument("action", choices=["up", "down", "status"])
    s3.add_argument("--port", type=int, help="listener port on 127.0.0.1 (up; default: a free port, then kept)")
    s3.add_argument("--bucket", action="append", help="up: create this bucket (repeatable)")
    s3.set_defaults(handler=cmd_s3)

    mlflow = commands.add_parser("mlflow", help="a local MLflow tracking server (SQLite store, local artifacts)")
    mlflow.add_argument("action", choices=["up", "down", "status"])
    mlflow.add_argument("--port", type=int, help="listener port on 127.0.0.1 (up; default: a free port, then kept)")
    mlflow.set_defaults(handler=cmd_mlflow)

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
