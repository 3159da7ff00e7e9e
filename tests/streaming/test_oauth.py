"""OAUTHBEARER: the OIDC client-credentials provider against a token endpoint on loopback, and on the broker.

The endpoint issues what Kafka's unsecured validator accepts (unsigned JWTs whose ``sub`` is the
client id), so the whole path runs here: settings, provider, kafka-python's SASL exchange, the
broker's validation, ACLs for the token's subject.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from kafka.net.sasl.oauth import AbstractTokenProvider, SaslMechanismOAuth

from scorepipe.settings import Settings
from scoring import SettingsError
from streaming.errors import KafkaAccessError
from streaming.producer import produce
from streaming.topics import count_messages, ensure_topics
from streaming.transport import transport_for
from streaming.transport.kafka_python import oauth
from streaming.transport.kafka_python.oauth import ClientCredentialsTokenProvider, TokenError, named_provider
from streaming.transport.kafka_python.options import connection_options
from tests.conftest import both_transports
from tests.helpers import wait_for

CLIENT_ID, CLIENT_SECRET = "scorer", "s3cr3t-" + uuid.uuid4().hex[:8]


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


class TokenEndpoint:
    """An OIDC token endpoint (client-credentials grant, HTTP Basic client authentication) on 127.0.0.1."""

    def __init__(self, lifetime: float = 300.0) -> None:
        self.lifetime = lifetime
        self.issued = 0
        self.forms: list[dict] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                endpoint.forms.append(form)
                expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    return self._reply(401, {"error": "invalid_client", "error_description": "bad client credentials"})
                now = int(time.time())
                claims = {"sub": CLIENT_ID, "iat": now, "exp": now + int(endpoint.lifetime)}
                if "scope" in form:
                    claims["scope"] = form["scope"]
                endpoint.issued += 1
                token = f"{_b64({'alg': 'none'})}.{_b64(claims)}."
                self._reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": endpoint.lifetime})

            def _reply(self, status: int, body: dict) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/realms/kafka/protocol/openid-connect/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TokenEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    with TokenEndpoint() as running:
        yield running


def test_tokens_are_fetched_once_and_reused_until_near_expiry(endpoint):
    provider = ClientCredentialsTokenProvider(endpoint.url, CLIENT_ID, CLIENT_SECRET, scope="kafka")
    first = provider.token()
    assert provider.token() == first and endpoint.issued == 1
    assert endpoint.forms[0] == {"grant_type": "client_credentials", "scope": "kafka"}
    short = ClientCredentialsTokenProvider(endpoint.url, CLIENT_ID, CLIENT_SECRET)
    endpoint.lifetime = 2.0  # renewed at 80% of a life shorter than the margin
    short.token()
    wait_for(lambda: short.token() and endpoint.issued >= 3, timeout=30, what="a third token", interval=0.1)
    assert endpoint.issued == 3
    mechanism = SaslMechanismOAuth(sasl_oauth_token_provider=provider)
    assert mechanism.auth_bytes() == f"n,,\x01auth=Bearer {first}\x01\x01".encode()


def test_refused_client_credentials_are_named_without_the_secret(endpoint):
    provider = ClientCredentialsTokenProvider(endpoint.url, CLIENT_ID, "wrong-secret")
    with pytest.raises(TokenError, match=r"refused client scorer: HTTP 401 invalid_client bad client credentials"):
        provider.token()
    unreachable = ClientCredentialsTokenProvider("http://127.0.0.1:9/token", CLIENT_ID, CLIENT_SECRET)
    with pytest.raises(TokenError, match="unreachable"):
        unreachable.token()
    assert "wrong-secret" not in repr(provider)


class FixedToken(AbstractTokenProvider):
    def token(self) -> str:
        return "fixed"


def make_fixed(settings: Settings) -> FixedToken:
    return FixedToken()


def test_a_provider_of_your_own_by_module_and_attribute():
    for spec in (f"{__name__}:FixedToken", f"{__name__}:make_fixed"):
        assert named_provider(spec, Settings()).token() == "fixed"
    with pytest.raises(SettingsError, match="expected module:attribute"):
        named_provider("no-colon", Settings())
    with pytest.raises(SettingsError, match="'json:dumps' failed: TypeError"):
        named_provider("json:dumps", Settings())
    with pytest.raises(SettingsError, match="is not a kafka.net.sasl.oauth.AbstractTokenProvider"):
        named_provider("builtins:str", Settings())
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="OAUTHBEARER",
        kafka_sasl_oauth_token_provider=f"{__name__}:FixedToken",
    )
    provider = connection_options(settings)["sasl_oauth_token_provider"]
    assert isinstance(provider, FixedToken) and connection_options(settings)["sasl_oauth_token_provider"] is provider


@pytest.mark.integration
@both_transports
def test_the_stream_clients_log_in_with_oidc_tokens_on_the_broker(secure_broker, endpoint, kafka_client):
    oauth._PROVIDERS.clear()
    topic = f"oauth-{uuid.uuid4().hex[:8]}"
    secure_broker.allow(CLIENT_ID, ("TOPIC", topic, "ALL"))
    settings = Settings(
        kafka_bootstrap_servers=secure_broker.sasl_bootstrap_servers,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="OAUTHBEARER",
        kafka_sasl_oauth_token_url=endpoint.url,
        kafka_sasl_oauth_client_id=CLIENT_ID,
        kafka_sasl_oauth_client_secret=CLIENT_SECRET,
        kafka_ssl_cafile=secure_broker.ca_file,
        features_topic=topic,
        kafka_client=kafka_client,
    )
    ensure_topics(settings, topic)
    produce(settings, count=50, seed=2)
    assert count_messages(settings, topic) == 50
    assert endpoint.issued == 1  # one token for every client of the process
    denied = settings.model_copy(update={"kafka_sasl_oauth_client_secret": "wrong"})
    started = time.monotonic()
    with pytest.raises(KafkaAccessError, match="refused client scorer: HTTP 401 .*kafka_sasl_oauth_client_secret"):
        transport_for(denied).reader(denied)
    assert time.monotonic() - started < 10
