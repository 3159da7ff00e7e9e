"""OAUTHBEARER tokens for Kafka: an OIDC client-credentials provider, or the user's own.

Confluent Cloud, Strimzi with Keycloak and most identity providers hand a service a client id and
secret; the token comes from their token endpoint (RFC 6749 client-credentials grant) and is
kept until shortly before it expires, so every connection of every client reuses it.
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any

import httpx
from kafka.net.sasl.oauth import AbstractTokenProvider

from scoring.errors import SettingsError
from streaming.settings import KafkaSettings

REFRESH_MARGIN_S = 60.0  # a token is replaced this long before it expires (or at 80% of a shorter life)
TOKEN_TIMEOUT_S = 10.0


class TokenError(SettingsError):
    """The token endpoint refused the client credentials or could not be reached."""


class ClientCredentialsTokenProvider(AbstractTokenProvider):
    """Tokens from an OIDC token endpoint for one client id and secret, cached until near expiry."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str | None = None) -> None:
        super().__init__()
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._token, lifetime = self._fetch()
                self._renew_at = time.monotonic() + max(1.0, min(lifetime - REFRESH_MARGIN_S, lifetime * 0.8))
            return self._token

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        try:
            response = httpx.post(
                self.token_url, data=form, auth=(self.client_id, self._secret), timeout=TOKEN_TIMEOUT_S
            )
        except httpx.HTTPError as exc:
            raise TokenError(f"OAUTHBEARER token endpoint {self.token_url} unreachable: {exc}") from None
        if response.status_code != 200:
            raise TokenError(
                f"OAUTHBEARER token endpoint {self.token_url} refused client {self.client_id}: "
                f"HTTP {response.status_code} {_oauth_error(response)}"
            )
        body = response.json()
        if "access_token" not in body:
            raise TokenError(f"OAUTHBEARER token endpoint {self.token_url} answered without an access_token")
        return str(body["access_token"]), float(body.get("expires_in", 300))

    def __repr__(self) -> str:
        return f"ClientCredentialsTokenProvider({self.token_url!r}, client_id={self.client_id!r})"


def _oauth_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return " ".join(str(body[k]) for k in ("error", "error_description") if k in body)


_PROVIDERS: dict[tuple[Any, ...], AbstractTokenProvider] = {}
_PROVIDERS_LOCK = threading.Lock()


def token_provider(settings: KafkaSettings) -> AbstractTokenProvider:
    """The settings' token provider: one per configuration for the process, so tokens are shared."""
    key = (
        settings.kafka_sasl_oauth_token_provider,
        settings.kafka_sasl_oauth_token_url,
        settings.kafka_sasl_oauth_client_id,
        settings.kafka_sasl_oauth_client_secret.get_secret_value() if settings.kafka_sasl_oauth_client_secret else None,
        settings.kafka_sasl_oauth_scope,
    )
    with _PROVIDERS_LOCK:
        if key not in _PROVIDERS:
            _PROVIDERS[key] = _build(settings)
        return _PROVIDERS[key]


def _build(settings: KafkaSettings) -> AbstractTokenProvider:
    if settings.kafka_sasl_oauth_token_provider:
        return named_provider(settings.kafka_sasl_oauth_token_provider, settings)
    assert settings.kafka_sasl_oauth_token_url and settings.kafka_sasl_oauth_client_id  # checked by KafkaSettings
    assert settings.kafka_sasl_oauth_client_secret is not None
    return ClientCredentialsTokenProvider(
        settings.kafka_sasl_oauth_token_url,
        settings.kafka_sasl_oauth_client_id,
        settings.kafka_sasl_oauth_client_secret.get_secret_value(),
        settings.kafka_sasl_oauth_scope,
    )


def named_provider(spec: str, settings: KafkaSettings) -> AbstractTokenProvider:
    """``module:attribute``: a provider instance, a provider class, or a factory taking the settings."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise SettingsError(f"kafka_sasl_oauth_token_provider {spec!r}: expected module:attribute")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise SettingsError(f"kafka_sasl_oauth_token_provider {spec!r}: {exc}") from exc
    if isinstance(target, AbstractTokenProvider):
        return target
    if isinstance(target, type) and issubclass(target, AbstractTokenProvider):
        return target()
    if callable(target):
        try:
            provider = target(settings)
        except Exception as exc:  # noqa: BLE001 - the user's factory: whatever it raises is named
            raise SettingsError(
                f"kafka_sasl_oauth_token_provider {spec!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(provider, AbstractTokenProvider):
            return provider
    raise SettingsError(
        f"kafka_sasl_oauth_token_provider {spec!r} is not a kafka.net.sasl.oauth.AbstractTokenProvider "
        "(nor a class or factory returning one)"
    )
