"""Liveness and readiness of a long-running scorer, and the small HTTP server that exposes them.

``/healthz`` answers 200 while the process's loop keeps beating; ``/readyz`` answers 200 when
every readiness check passes (model loaded, partitions assigned, broker reachable, ...), else
503 with a JSON body naming each check that fails and why. ``/metrics`` serves Prometheus's
text format from the scorer's own registry. The server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# A readiness check returns None when ready, or the reason it is not.
ReadinessCheck = Callable[[], str | None]


class Health:
    """What the loop reports about itself: a heartbeat for liveness, named checks for readiness.

    >>> health = Health(stale_after_seconds=60); health.add_check("model", lambda: None)
    >>> health.beat(); health.live()[0], health.ready()
    (True, (True, {'model': 'ok'}))
    """

    def __init__(self, *, stale_after_seconds: float = 60.0) -> None:
        self.stale_after_seconds = stale_after_seconds
        self.checks: dict[str, ReadinessCheck] = {}
        self.notes: dict[str, ReadinessCheck] = {}  # shown on /readyz, never make it fail (a refused reload)
        self._beat = time.monotonic()
        self.started = time.monotonic()

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check

    def add_note(self, name: str, note: ReadinessCheck) -> None:
        """Something an operator should see on ``/readyz`` that does not stop the scorer serving."""
        self.notes[name] = note

    def noted(self) -> dict[str, str]:
        return {name: text for name, note in self.notes.items() if (text := note())}

    def beat(self) -> None:
        """Called by the loop on every turn; a loop stuck for ``stale_after_seconds`` is not live."""
        self._beat = time.monotonic()

    def live(self) -> tuple[bool, dict[str, Any]]:
        silent = time.monotonic() - self._beat
        uptime = round(time.monotonic() - self.started)
        body = {"loop_last_beat_seconds_ago": round(silent, 3), "uptime_seconds": uptime}
        return silent < self.stale_after_seconds, body

    def ready(self) -> tuple[bool, dict[str, str]]:
        results = {}
        for name, check in self.checks.items():
            try:
                reason = check()
            except Exception as exc:  # noqa: BLE001 - a failing check means not ready, with why
                reason = f"check failed: {type(exc).__name__}: {exc}"
            results[name] = "ok" if reason is None else reason
        return all(v == "ok" for v in results.values()), results


class HealthCollector(Collector):
    """Readiness and liveness as gauges, read at each scrape, so an alert can page on a scorer not ready."""

    def __init__(self, health: Health) -> None:
        self.health = health

    def collect(self) -> Any:
        ready, checks = self.health.ready()
        live, _ = self.health.live()
        yield GaugeMetricFamily("scorepipe_ready", "1 when every readiness check passes (/readyz answers 200)", ready)
        failing = GaugeMetricFamily(
            "scorepipe_ready_check", "Each readiness check: 1 passing, 0 failing (the reason is on /readyz)",
            labels=["check"],
        )  # fmt: skip
        for name, result in checks.items():
            failing.add_metric([name], float(result == "ok"))
        yield failing
        yield GaugeMetricFamily("scorepipe_live", "1 while the loop keeps beating (/healthz answers 200)", live)


class OpsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on a background thread; ``/metrics`` includes readiness."""

    def __init__(self, registry: CollectorRegistry, health: Health, *, port: int, host: str = "127.0.0.1") -> None:
        self.registry = registry
        self.health = health
        self.health_registry = CollectorRegistry()
        self.health_registry.register(HealthCollector(health))
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host!s}:{self.port}"

    def start(self) -> OpsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(server: OpsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                exposition = generate_latest(server.registry) + generate_latest(server.health_registry)
                self._send(200, exposition, CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, body = server.health.live()
                self._json(200 if ok else 503, {"status": "alive" if ok else "stalled", **body})
            elif path == "/readyz":
                ok, checks = server.health.ready()
                body = {"status": "ready" if ok else "not ready", "checks": checks}
                if notes := server.health.noted():
                    body["notes"] = notes
                self._json(200 if ok else 503, body)
            else:
                self._json(404, {"error": f"no such endpoint {path}; try /metrics, /healthz, /readyz"})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes every few seconds; stay quiet
            return

    return Handler
