"""Prometheus, the Pushgateway and Alertmanager (Debian packages), each on a loopback port of its own."""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from devservers.process import LocalServer, ServiceError, free_port, http_ok, require_binary


class _PrometheusProject(LocalServer):
    """A Prometheus-project server on 127.0.0.1:``port``, ready when ``/-/ready`` answers."""

    def ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")


class Pushgateway(_PrometheusProject):
    """A Prometheus Pushgateway (Debian ``prometheus-pushgateway``) on 127.0.0.1, in memory only."""

    def __init__(self, home: Path, *, port: int | None = None):
        self.home = home
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
        self.home = home
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
        self.home = home
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
