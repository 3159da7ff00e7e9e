"""Start, wait for and stop a local server: the base every development server of ``devservers`` shares.

Each server runs in its own process group with its output in a log file, so it can be stopped,
children and all, by its PID, and its log can be shown when it fails to come up. A server left
running by ``scorepipe NAME up`` records its PID and port in a state file, for ``status`` and ``down``.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Self

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


@contextlib.contextmanager
def prepared_once(target: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``target`` while it is prepared (downloaded, built).

    Two processes preparing the same cache (two test workers on a fresh clone, two ``up`` commands)
    would otherwise download into and rename over each other; the second waits, then finds it ready.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def maven_jars(pom: Path, libs: Path, *, marker: str, what: str) -> Path:
    """Resolve the runtime jars ``pom`` names into ``libs`` with Maven, once (``marker`` shows they are there)."""
    if any(libs.glob(marker)):
        return libs
    with prepared_once(libs):
        return _resolve_jars(pom, libs, marker=marker, what=what)


def _resolve_jars(pom: Path, libs: Path, *, marker: str, what: str) -> Path:
    if any(libs.glob(marker)):  # another process resolved them while this one waited for the lock
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

    def start(self) -> Self:
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


class LocalServer(ManagedProcess):
    """A server on 127.0.0.1:``port`` living in one folder (``home``): configured, started, ready, described, stopped.

    Subclasses write their configuration in ``configure`` and say when they answer in ``ready``;
    ``describe`` is what a client needs to reach them (recorded with the PID for ``status``).
    """

    STATE_FILE = "server.json"
    START_TIMEOUT_S = 60.0
    home: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configure(self) -> None:
        """Write what the process reads at start (nothing by default)."""

    def ready(self) -> bool:
        """Whether it answers: by default, its port accepts connections."""
        return port_in_use(self.port)

    def describe(self) -> dict[str, object]:
        """How a client reaches it (no secret: this is printed and recorded)."""
        return {"url": self.url}

    def start(self, timeout: float | None = None) -> Self:
        self.configure()
        super().start()
        self.wait_until(self.ready, timeout=timeout or self.START_TIMEOUT_S, what="ready")
        return self

    # -- left running by `scorepipe NAME up`, found again by `status` and `down` ---------------

    def save_state(self) -> None:
        record_detached(self.home / self.STATE_FILE, pid=self.pid, port=self.port, **self.describe())

    @classmethod
    def read_state(cls, home: Path) -> dict | None:
        """The server ``up`` left running in ``home``, if it still answers on its port."""
        state = read_recorded(home / cls.STATE_FILE)
        return state if state and port_in_use(int(state["port"])) else None

    @classmethod
    def stop_detached(cls, home: Path, timeout: float = 30.0) -> dict | None:
        """Stop the server ``up`` left running in ``home``, by its recorded PID, and forget it."""
        return stop_recorded(home / cls.STATE_FILE, timeout=timeout)


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


def require_binary(name: str, package: str) -> str:
    """The path of a Debian-packaged server, or a ServiceError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"{name} is not installed: `apt-get install {package}` (make test does it when it can)")
    return path
