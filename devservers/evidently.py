"""Evidently's own UI over a scorepipe workspace, as a local server."""

from __future__ import annotations

import os
from pathlib import Path

from devservers.process import LocalServer, free_port, http_ok, venv_bin


class EvidentlyUI(LocalServer):
    """Evidently's own UI (``evidently ui``) over a scorepipe workspace, on 127.0.0.1 unless told otherwise."""

    def __init__(self, workspace: str | Path, *, log_path: Path, port: int | None = None, host: str = "127.0.0.1"):
        self.home = Path(log_path).parent
        self.port = port or free_port()
        self.host = host
        command = [venv_bin("evidently"), "ui", "--workspace", str(workspace), "--host", host, "--port", str(self.port)]
        super().__init__("evidently ui", command, env={**os.environ, "DO_NOT_TRACK": "1"}, log_path=log_path)

    def ready(self) -> bool:
        return http_ok(f"{self.url}/api/version")
