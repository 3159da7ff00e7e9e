"""The container image and the compose stack, checked without a Docker engine (none runs here).

The Dockerfile is read; the compose file is resolved by ``docker-compose config`` when the tool is
installed (``make tools`` installs it), which validates it against the compose schema.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SERVICES = ("setup", "worker", "consumer", "serve")


def _instructions() -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            keyword, _, rest = current.strip().partition(" ")
            lines.append((keyword.upper(), rest))
            current = ""
    return lines


def test_the_image_is_slim_locked_non_root_and_carries_every_package():
    steps = _instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert ("RUN", "pip install -r requirements.lock") in steps
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert ("ENTRYPOINT", '["scorepipe"]') in steps
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    copied = {rest.split()[0].rstrip("/") for keyword, rest in steps if keyword == "COPY"}
    tops = {p.split(".")[0] for p in packages}
    assert tops <= copied, f"packages missing from the image: {tops - copied}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".scorepipe", ".git"} <= set(ignored)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed (make tools)")
def test_the_compose_stack_builds_the_image_and_waits_on_health_checks():
    result = subprocess.run(
        ["docker-compose", "config"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    for name in IMAGE_SERVICES:
        service = services[name]
        assert service["image"] == "scorepipe:local" and Path(service["build"]["context"]) == ROOT
        command = " ".join(service.get("command") or [])
        assert "pip install" not in command, f"{name} installs packages at start"
        assert any(str(volume).startswith("scorepipe-home:/app/.scorepipe") for volume in service["volumes"])
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert "healthcheck" in services["kafka"] and "healthcheck" in services["prefect-server"]
    assert services["consumer"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    assert services["serve"]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
