"""The container image and the compose stack, checked without a Docker engine (none runs here).

The Dockerfile is read; the compose file is resolved by ``docker-compose config`` when the tool is
installed (``make tools`` installs it), which validates it against the compose schema.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from setuptools import find_packages

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
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = set(find_packages(where=str(ROOT), include=include))
    tops = {p.split(".")[0] for p in packages}
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in tops
        for init in (ROOT / top).rglob("__init__.py")
        if not {".venv", ".cache", "__pycache__"} & set(init.parts)
    }
    assert on_disk <= packages, f"packages not installed: {sorted(on_disk - packages)}"
    assert {"streaming.transport.kafka_python", "streaming.delivery", "gate"} <= packages
    copied = {rest.split()[0].rstrip("/") for keyword, rest in steps if keyword == "COPY"}
    assert tops <= copied, f"packages missing from the image: {tops - copied}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".scorepipe", ".git"} <= set(ignored)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed (make tools)")
def test_the_compose_stack_builds_the_image_and_waits_on_health_checks():
    unset = subprocess.run(["docker-compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert unset.returncode != 0 and "set GRAFANA_ADMIN_PASSWORD" in unset.stderr  # no default password ships
    env = {**os.environ, "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(16)}
    result = subprocess.run(
        ["docker-compose", "config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
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
    # monitoring: Prometheus with the rules, Alertmanager, the Pushgateway, Grafana provisioned, the Evidently UI
    mounts = {v["source"] if isinstance(v, dict) else str(v).split(":")[0] for v in services["prometheus"]["volumes"]}
    assert any(m.endswith("monitoring/alerts.yml") for m in mounts)
    grafana = {v["target"] if isinstance(v, dict) else str(v).split(":")[1] for v in services["grafana"]["volumes"]}
    assert {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards/scorepipe.json"} <= grafana
    assert services["evidently-ui"]["command"][:3] == ["ui", "--host", "0.0.0.0"]
    assert {"alertmanager", "pushgateway"} <= set(services)
    assert "0.0.0.0" in services["consumer"]["command"]  # its /metrics reachable by Prometheus, not published
    assert services["consumer"]["environment"]["SCOREPIPE_PUSHGATEWAY_URL"] == "http://pushgateway:9091"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (make tools)")
def test_the_compose_prometheus_configuration_is_valid(tmp_path):
    """``promtool check config`` on the compose Prometheus file, its rule file where the stack mounts it."""
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    config["rule_files"] = [str(ROOT / "monitoring" / "alerts.yml")]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = subprocess.run(["promtool", "check", "config", str(local)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["pushgateway"]["honor_labels"] is True
    assert jobs["scorepipe-stream"]["static_configs"][0]["targets"] == ["consumer:9108"]
