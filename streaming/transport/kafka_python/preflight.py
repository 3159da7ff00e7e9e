"""One connection attempt before a secured client is built: why Kafka refused it, said within seconds.

kafka-python retries a refused login, a mechanism the broker lacks and an untrusted certificate
until its bootstrap timeout (30 s), then raises ``Unable to bootstrap``; the real cause is only
logged by its connection, a fraction of a second in. The preflight bootstraps once in a thread,
listens to that log, and turns the first cause that retrying cannot fix into a
``KafkaAccessError`` naming the user, the mechanism, the broker and the setting to change. A
broker that is merely unreachable is left to the clients' own waiting and retrying.
A configuration that connected once is not checked again in the process.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka.errors import KafkaError, SaslAuthenticationFailedError, UnsupportedSaslMechanismError
from kafka.net.compat import KafkaNetClient
from kafka.protocol.parser import KafkaProtocol
from kafka.protocol.sasl import SaslHandshakeRequest

from streaming import refusals
from streaming.errors import KafkaAccessError
from streaming.settings import KafkaSettings
from streaming.transport.kafka_python.oauth import TokenError

PREFLIGHT_TIMEOUT_S = 8.0
HANDSHAKE_TIMEOUT_S = 3.0
CONNECTION_LOGGER = "kafka.net.connection"  # logs every lost connection with its cause
MANAGER_LOGGER = "kafka.net.manager"  # logs a failed login attempt (a token provider's error among them)

_verified: set[tuple[Any, ...]] = set()
_lock = threading.Lock()


def ensure_access(settings: KafkaSettings, options: dict[str, Any], probe: Callable[..., Any]) -> None:
    """Raise ``KafkaAccessError`` if the brokers refuse these credentials or certificates.

    PLAINTEXT has nothing to refuse: it is not checked.
    """
    if settings.kafka_security_protocol == "PLAINTEXT":
        return
    key = _identity(settings)
    with _lock:
        if key in _verified:
            return
    outcome = _attempt(options, probe)
    if outcome is True:
        with _lock:
            _verified.add(key)
        return
    if isinstance(outcome, BaseException):
        raise explain(settings, outcome) from None
    # No answer and no refusal: an unreachable broker, which the client itself waits out.


def _identity(settings: KafkaSettings) -> tuple[Any, ...]:
    names = [n for n in type(settings).model_fields if n.startswith("kafka_")]
    return tuple(
        str(getattr(settings, n)) if "password" not in n and "secret" not in n else _digest(settings, n) for n in names
    )


def _digest(settings: KafkaSettings, name: str) -> str:
    import hashlib

    value = getattr(settings, name)
    return hashlib.sha256(value.get_secret_value().encode()).hexdigest() if value is not None else ""


class _Refusals(logging.Handler):
    """The exceptions one client's connections log; signals the first that is final."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.net: Any = None  # the preflight client's network loop: other clients' records are not ours
        self.final: BaseException | None = None
        self.lost_in_sasl = 0
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        token_refused = next((a for a in args if isinstance(a, TokenError)), None)
        if token_refused is not None and self.final is None:  # the token endpoint said no: no login was tried
            self.final = token_refused
            self.event.set()
            return
        if not args or self.net is None or getattr(args[0], "net", None) is not self.net:
            return
        for arg in args[1:]:
            if not isinstance(arg, BaseException) or self.final is not None:
                continue
            if is_final(arg):
                self.final = arg
            elif _lost_in_sasl(args[0]):
                # The broker hangs up on a failed login; the failure's own response often loses
                # the race with the hang-up. Twice in a row is not a coincidence.
                self.lost_in_sasl += 1
                if self.lost_in_sasl >= 2:
                    self.final = SaslAuthenticationFailedError("the broker closed the connection during SASL login")
            if self.final is not None:
                self.event.set()


def _lost_in_sasl(connection: Any) -> bool:
    """A connection that got past ApiVersions (its broker version is known) but never finished initializing."""
    init = getattr(connection, "_init_future", None)
    sasl = getattr(connection, "sasl_enabled", False)
    return bool(sasl) and connection.broker_version is not None and init is not None and not init.succeeded()


def is_final(exc: BaseException) -> bool:
    """Refusals that retrying with the same configuration cannot get past."""
    if isinstance(exc, (SaslAuthenticationFailedError, UnsupportedSaslMechanismError)):
        return True
    text = str(exc)
    return any(
        marker in text
        for marker in (
            "CERTIFICATE_VERIFY_FAILED",
            "BAD_CERTIFICATE",
            "CERTIFICATE_REQUIRED",
            "WRONG_VERSION_NUMBER",
            "Handshake failed: [SSL: UNEXPECTED_EOF",  # a plaintext listener hangs up on a TLS hello
        )
    )


def _attempt(options: dict[str, Any], probe: Callable[..., Any]) -> bool | BaseException | None:
    """True if a bootstrap succeeded, the refusal if one was final, None if nothing answered in time."""
    refusals = _Refusals()
    loggers = [logging.getLogger(CONNECTION_LOGGER), logging.getLogger(MANAGER_LOGGER)]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(refusals)
        if lg.getEffectiveLevel() > logging.WARNING:
            lg.setLevel(logging.WARNING)
    connected = threading.Event()
    clients: list[Any] = []

    def network_client(**config: Any) -> Any:
        client = KafkaNetClient(**config)
        refusals.net = client._net
        clients.append(client)
        return client

    def bootstrap() -> None:
        try:
            admin = probe(**options, kafka_client=network_client, bootstrap_timeout_ms=int(PREFLIGHT_TIMEOUT_S * 1000))
        except Exception:  # noqa: BLE001 - a refusal was logged (and caught), or nothing answered
            for client in clients:
                client.close()
                client._net.stop()
            refusals.event.set()
            return
        connected.set()
        refusals.event.set()
        admin.close()

    thread = threading.Thread(target=bootstrap, name="kafka-preflight", daemon=True)
    try:
        thread.start()
        refusals.event.wait(PREFLIGHT_TIMEOUT_S + 2)
        if refusals.final is not None:
            for client in clients:  # ends the bootstrap's retries now rather than at its timeout
                # The bootstrap thread may have given up and closed its selector a moment before:
                # closing the manager then raises "NetworkSelector closed!", and there is nothing left to end.
                with contextlib.suppress(RuntimeError):
                    client._manager.close()
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(refusals)
            lg.setLevel(level)
    if connected.is_set():
        return True
    return refusals.final


def enabled_mechanisms(settings: KafkaSettings) -> list[str] | None:
    """The SASL mechanisms the first broker's listener enables (one handshake, no credentials sent).

    A refused login and a mechanism the listener lacks both end in a hang-up that kafka-python
    often reports before the broker's answer; the handshake alone tells them apart. TLS is not
    verified here: the connection it answers on already passed (or failed) verification.
    """
    host, _, port = settings.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
    parser = KafkaProtocol(client_id="scorepipe-preflight")
    request = SaslHandshakeRequest(mechanism=settings.kafka_sasl_mechanism or "PLAIN", max_version=1)
    request.API_VERSION = 1
    parser.send_request(request)
    try:
        sock: socket.socket = socket.create_connection((host.strip("[]"), int(port)), timeout=HANDSHAKE_TIMEOUT_S)
        if settings.kafka_security_protocol == "SASL_SSL":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock)
        with sock:
            sock.sendall(parser.send_bytes())
            deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                for _, response in parser.receive_bytes(chunk):
                    return [str(m) for m in response.mechanisms]
    except (OSError, ValueError, KafkaError):
        return None
    return None


def explain(settings: KafkaSettings, exc: BaseException) -> KafkaAccessError:
    """What ``exc`` means for these settings, in words that name what to change."""
    brokers = settings.kafka_bootstrap_servers
    text = str(exc)
    mechanism = settings.kafka_sasl_mechanism
    if isinstance(exc, TokenError):
        return KafkaAccessError(f"{exc} (check kafka_sasl_oauth_client_id and kafka_sasl_oauth_client_secret)")
    if isinstance(exc, (SaslAuthenticationFailedError, UnsupportedSaslMechanismError)):
        enabled = enabled_mechanisms(settings)
        if enabled is not None and mechanism not in enabled:
            return KafkaAccessError(refusals.mechanism_not_enabled(settings, enabled))
    if isinstance(exc, SaslAuthenticationFailedError):
        return KafkaAccessError(refusals.login_refused(settings, text.split(": ", 2)[-1]))
    if isinstance(exc, UnsupportedSaslMechanismError):
        return KafkaAccessError(refusals.mechanism_not_enabled(settings, None))
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = text.split("certificate verify failed: ", 1)[-1].split(" (_ssl")[0]
        if "mismatch" in detail or "not valid for" in detail or "match" in detail:
            return KafkaAccessError(refusals.certificate_names_other_host(settings, detail))
        return KafkaAccessError(refusals.certificate_not_trusted(settings, detail))
    if "BAD_CERTIFICATE" in text or "CERTIFICATE_REQUIRED" in text:
        return KafkaAccessError(refusals.client_certificate_refused(settings))
    if "WRONG_VERSION_NUMBER" in text or "UNEXPECTED_EOF" in text:
        return KafkaAccessError(refusals.tls_hung_up(settings))
    return KafkaAccessError(f"Kafka at {brokers} refused the connection: {type(exc).__name__}: {text}")
