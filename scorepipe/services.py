"""Start, wait for and stop the local services scorepipe needs (Prefect server, worker, broker).

Each service runs in its own process group with its output in a log file, so it can be
stopped, children and all, by its PID, and its log can be shown when it fails to come up.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from scoring import ScoringError


class ServiceError(ScoringError):
    """Raised when a local service fails to start or to answer in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv_bin(name: str) -> str:
    """The path of a console script installed next to the running interpreter."""
    return str(Path(sys.executable).parent / name)


def maven_jars(pom: Path, libs: Path, *, marker: str, what: str) -> Path:
    """Resolve the runtime jars ``pom`` names into ``libs`` with Maven, once (``marker`` shows they are there)."""
    if any(libs.glob(marker)):
        return libs
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise ServiceError(f"{what} needs java (17+) and mvn on PATH")
    tmp = libs.with_name(libs.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    command = ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
    result = subprocess.run([*command, "-DincludeScope=runtime"], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise ServiceError(f"could not resolve the jars of {what} with Maven:\n{result.stdout}\n{result.stderr}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    return libs


class ManagedProcess:
    """A child process in its own session, logged to a file and stopped by its process group."""

    def __init__(self, name: str, argv: list[str], *, env: Mapping[str, str], log_path: Path, cwd: Path | None = None):
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def wait_until(self, ready: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Poll ``ready`` until it holds; fail early, with the log's tail, if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServiceError(f"{self.name} exited with code {self.process.returncode}:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(0.25)
        raise ServiceError(f"{self.name} did not become {what} within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        stop_process_group(self.process.pid, timeout=timeout)
        self.process.wait(timeout=5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process_group(pid: int, *, timeout: float = 20.0) -> None:
    """Stop the process group led by ``pid``: SIGTERM, wait, then SIGKILL."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        try:  # reap it if it is our child, so it does not linger as a zombie
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def record_detached(path: Path, **state: object) -> None:
    """Record a service left running by ``scorepipe ... up`` (its PID and port), for ``status`` and ``down``."""
    path.write_text(json.dumps(state))


def read_recorded(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def stop_recorded(path: Path, *, timeout: float = 30.0) -> dict | None:
    """Stop a recorded service by its PID, wait for its port to close, and forget it."""
    state = read_recorded(path)
    if state is None:
        return None
    stop_process_group(int(state["pid"]), timeout=timeout)
    deadline = time.monotonic() + timeout
    while port_in_use(int(state["port"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    path.unlink(missing_ok=True)
    return state


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URLs we built
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def prefect_env(home: Path, api_url: str | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for Prefect processes: a private PREFECT_HOME, no telemetry, fast worker polls."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
            "PREFECT_CLI_PROMPT": "false",
        }
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    else:
        env.pop("PREFECT_API_URL", None)
    return env


class PrefectServer(ManagedProcess):
    """A Prefect server with its own SQLite database under ``home``, on 127.0.0.1."""

    def __init__(self, home: Path, *, port: int | None = None, base_env: Mapping[str, str] | None = None):
        self.home = home
        self.port = port or free_port()
        super().__init__(
            "prefect server",
            [venv_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=prefect_env(home, base=base_env),
            log_path=home / "logs" / "server.log",
        )

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for CLI calls, workers and flows that talk to this server."""
        return prefect_env(self.home, self.api_url, base=base)

    def start(self, timeout: float = 120.0) -> PrefectServer:  # type: ignore[override]
        super().start()
        self.wait_until(lambda: http_ok(f"{self.api_url}/health"), timeout=timeout, what="healthy")
        return self


def prefect_worker(server: PrefectServer, pool: str, *, cwd: Path, base_env: Mapping[str, str] | None = None):
    """A process worker polling ``pool`` on ``server``; its flow runs inherit ``base_env``."""
    return ManagedProcess(
        "prefect worker",
        [venv_bin("prefect"), "worker", "start", "--pool", pool, "--type", "process"],
        env=server.client_env(base_env),
        log_path=server.home / "logs" / "worker.log",
        cwd=cwd,
    )


def run_prefect(args: list[str], *, env: Mapping[str, str], cwd: Path, timeout: float = 300.0) -> str:
    """Run a ``prefect`` CLI command and return its output; raise with that output on failure."""
    result = subprocess.run(
        [venv_bin("prefect"), *args],
        env={**env, "PWD": str(cwd)},  # prefect.yaml templates {{ $PWD }}; subprocess cwd does not set it
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise ServiceError(f"prefect {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def require_binary(name: str, package: str) -> str:
    """The path of a Debian-packaged server, or a ServiceError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"{name} is not installed: `apt-get install {package}` (make test does it when it can)")
    return path


class _PrometheusProject(ManagedProcess):
    """A Prometheus-project server on 127.0.0.1:``port``, ready when ``/-/ready`` answers."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> _PrometheusProject:  # type: ignore[override]
        super().start()
        self.wait_until(lambda: http_ok(f"{self.url}/-/ready"), timeout=timeout, what="ready")
        return self


class Pushgateway(_PrometheusProject):
    """A Prometheus Pushgateway (Debian ``prometheus-pushgateway``) on 127.0.0.1, in memory only."""

    def __init__(self, home: Path, *, port: int | None = None):
        self.port = port or free_port()
        binary = require_binary("prometheus-pushgateway", "prometheus-pushgateway")
        super().__init__(
            "pushgateway",
            [binary, f"--web.listen-address=127.0.0.1:{self.port}"],
            env=os.environ,
            log_path=home / "pushgateway.log",
        )


class PrometheusServer(_PrometheusProject):
    """A Prometheus server (Debian ``prometheus``) on 127.0.0.1 scraping ``targets`` every second.

    ``targets`` maps a job name to ``host:port``; the jobs in ``honor`` keep the pushed labels (the
    Pushgateway's). ``rule_files`` are evaluated every second; firing alerts go to ``alertmanager``.
    """

    def __init__(
        self,
        home: Path,
        targets: Mapping[str, str],
        *,
        port: int | None = None,
        honor: tuple[str, ...] = (),
        rule_files: tuple[Path, ...] = (),
        alertmanager: str | None = None,
    ):
        self.port = port or free_port()
        home.mkdir(parents=True, exist_ok=True)
        config = home / "prometheus.yml"
        jobs = "".join(
            f"  - job_name: {job}\n    honor_labels: {'true' if job in honor else 'false'}\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
            for job, target in targets.items()
        )
        rules = "".join(f"  - {path}\n" for path in rule_files)
        alerting = (
            f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{alertmanager}']\n"
            if alertmanager
            else ""
        )
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            + (f"rule_files:\n{rules}" if rules else "")
            + alerting
            + f"scrape_configs:\n{jobs}"
        )
        binary = require_binary("prometheus", "prometheus")
        super().__init__(
            "prometheus",
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            env=os.environ,
            log_path=home / "prometheus.log",
        )

    def alerts(self) -> list[dict]:
        """The alerts Prometheus holds now, pending or firing (``/api/v1/alerts``)."""
        with urllib.request.urlopen(f"{self.url}/api/v1/alerts", timeout=5) as response:  # noqa: S310 - loopback
            return list(json.loads(response.read())["data"]["alerts"])

    def query(self, promql: str) -> list[dict]:
        """The instant vector ``promql`` evaluates to now (Prometheus's HTTP API)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback URL we built
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise ServiceError(f"Prometheus query {promql!r} failed: {body}")
        return list(body["data"]["result"])


class Alertmanager(_PrometheusProject):
    """An Alertmanager (Debian ``prometheus-alertmanager``) on 127.0.0.1, one node, one webhook-less receiver.

    Alerts are held and shown on ``/api/v2/alerts``; a real setup adds receivers (e-mail, Slack,
    PagerDuty) to the same configuration.
    """

    def __init__(self, home: Path, *, port: int | None = None):
        self.port = port or free_port()
        home.mkdir(parents=True, exist_ok=True)
        config = home / "alertmanager.yml"
        config.write_text(
            "route:\n  receiver: scorepipe\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n"
            "receivers:\n  - name: scorepipe\n"
        )
        binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
        super().__init__(
            "alertmanager",
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # one node: no gossip port
            ],
            env=os.environ,
            log_path=home / "alertmanager.log",
        )

    def alerts(self) -> list[dict]:
        """The alerts it has received and not yet resolved (``/api/v2/alerts``)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as response:  # noqa: S310 - loopback
            return list(json.loads(response.read()))


class EvidentlyUI(ManagedProcess):
    """Evidently's own UI (``evidently ui``) over a scorepipe workspace, on 127.0.0.1 unless told otherwise."""

    def __init__(self, workspace: str | Path, *, log_path: Path, port: int | None = None, host: str = "127.0.0.1"):
        self.port = port or free_port()
        self.host = host
        command = [venv_bin("evidently"), "ui", "--workspace", str(workspace), "--host", host, "--port", str(self.port)]
        super().__init__("evidently ui", command, env={**os.environ, "DO_NOT_TRACK": "1"}, log_path=log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> EvidentlyUI:  # type: ignore[override]
        super().start()
        self.wait_until(lambda: http_ok(f"{self.url}/api/version"), timeout=timeout, what="ready")
        return self
