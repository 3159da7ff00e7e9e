"""A Prefect server and process worker of their own, for the demo and the tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from devservers.process import LocalServer, ManagedProcess, ServiceError, free_port, http_ok, venv_bin


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


class PrefectServer(LocalServer):
    """A Prefect server with its own SQLite database under ``home``, on 127.0.0.1."""

    START_TIMEOUT_S = 120.0

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
        return f"{self.url}/api"

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for CLI calls, workers and flows that talk to this server."""
        return prefect_env(self.home, self.api_url, base=base)

    def ready(self) -> bool:
        return http_ok(f"{self.api_url}/health")

    def describe(self) -> dict[str, object]:
        return {"api_url": self.api_url}


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
