"""Kafka client properties files, as Confluent Cloud, MSK and Aiven hand them out, mapped onto settings.

A Java client (``security.protocol``, ``sasl.jaas.config``, ``ssl.truststore...``) or librdkafka
(``sasl.username``, ``ssl.ca.location``) properties file becomes ``kafka_*`` settings. Every key
is mapped or refused by name and line: a key silently ignored is a connection that silently
does something else (plaintext on a typo, say).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from scoring.errors import SettingsError

# property -> setting, for keys whose value is taken as it is
DIRECT = {
    "bootstrap.servers": "kafka_bootstrap_servers",
    "metadata.broker.list": "kafka_bootstrap_servers",
    "security.protocol": "kafka_security_protocol",
    "sasl.mechanism": "kafka_sasl_mechanism",
    "sasl.mechanisms": "kafka_sasl_mechanism",
    "sasl.username": "kafka_sasl_username",
    "sasl.password": "kafka_sasl_password",
    "ssl.ca.location": "kafka_ssl_cafile",
    "ssl.certificate.location": "kafka_ssl_certfile",
    "ssl.key.location": "kafka_ssl_keyfile",
    "ssl.key.password": "kafka_ssl_key_password",
    "sasl.oauthbearer.token.endpoint.url": "kafka_sasl_oauth_token_url",
    "sasl.oauthbearer.client.id": "kafka_sasl_oauth_client_id",
    "sasl.oauthbearer.client.secret": "kafka_sasl_oauth_client_secret",
    "sasl.oauthbearer.scope": "kafka_sasl_oauth_scope",
    "session.timeout.ms": "stream_session_timeout_ms",
}
# keys that change nothing for scorepipe's clients, with the value(s) under which that is true
HARMLESS = {
    "client.dns.lookup": None,  # kafka-python tries every address a name resolves to
    "acks": {"all", "-1"},  # scorepipe's producers always wait for all replicas
    "sasl.oauthbearer.method": {"oidc"},
    "sasl.login.callback.handler.class": None,  # the OIDC handler: scorepipe's own provider does its job
    "sasl.oauthbearer.sub.claim.name": None,
}
REFUSED = {
    "ssl.truststore.location": "a Java truststore cannot be read by the Python client: export its CA as PEM "
    "(keytool -exportcert -rfc) and set ssl.ca.location",
    "ssl.keystore.location": "a Java keystore cannot be read by the Python client: export the certificate and key "
    "as PEM and set ssl.certificate.location and ssl.key.location",
    "sasl.kerberos.service.name": "GSSAPI (Kerberos) is not supported",
}
JAAS_OPTION = re.compile(r'(\w+)\s*=\s*("(?:[^"\\]|\\.)*"|\S+?)(?=\s|;|$)')
JAAS_MODULES = {
    "PlainLoginModule": ("kafka_sasl_username", "kafka_sasl_password"),
    "ScramLoginModule": ("kafka_sasl_username", "kafka_sasl_password"),
    "OAuthBearerLoginModule": None,
    "IAMLoginModule": None,
}


def parse_properties(text: str) -> list[tuple[int, str, str]]:
    r"""(line number, key, value) of a Java properties text: ``=``, ``:`` or blank separators, ``\\`` continuations."""
    entries: list[tuple[int, str, str]] = []
    logical, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip() if not logical else raw.lstrip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if not logical:
            start = number
        if line.endswith("\\") and not line.endswith("\\\\"):
            logical += line[:-1]
            continue
        logical += line
        match = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)", logical)
        if match is None:
            entries.append((start, logical, ""))
        else:
            entries.append((start, match.group(1), match.group(2).strip()))
        logical = ""
    if logical:
        raise SettingsError(f"line {start}: the last property ends in a continuation backslash")
    return entries


def settings_from_properties(path: Path) -> dict[str, object]:
    """The ``kafka_*`` settings a client properties file stands for; a key that cannot be honoured is named."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"kafka_config: cannot read {path}: {exc.strerror or exc}") from exc
    values: dict[str, object] = {}
    problems: list[str] = []
    for line, key, value in parse_properties(text):
        where = f"{path}:{line}"
        if key in DIRECT:
            values[DIRECT[key]] = _direct(key, value)
        elif key == "ssl.endpoint.identification.algorithm":
            if value.lower() not in ("", "https", "none"):
                problems.append(f"{where}: {key}={value!r} (expected https, or empty to skip the host name check)")
            values["kafka_ssl_check_hostname"] = value.lower() == "https"
        elif key == "sasl.jaas.config":
            try:
                values.update(jaas_settings(value))
            except SettingsError as exc:
                problems.append(f"{where}: {exc}")
        elif key in HARMLESS:
            allowed = HARMLESS[key]
            if allowed is not None and value.lower() not in allowed:
                problems.append(f"{where}: {key}={value!r} is not supported (only {', '.join(sorted(allowed))})")
        elif key in REFUSED:
            problems.append(f"{where}: {key}: {REFUSED[key]}")
        else:
            problems.append(f"{where}: unknown or unsupported key {key!r}")
    if problems:
        raise SettingsError(f"Kafka client properties {path}: " + "; ".join(problems))
    return values


def _direct(key: str, value: str) -> object:
    if key.startswith("ssl.") and key.endswith(".location"):
        return Path(value).expanduser()
    if key in ("sasl.mechanism", "sasl.mechanisms", "security.protocol"):
        return value.strip().upper()
    return value


def jaas_settings(config: str) -> dict[str, object]:
    """Username and password (PLAIN, SCRAM) or OAuth client credentials out of a ``sasl.jaas.config`` line."""
    module = config.split()[0] if config.split() else ""
    short = module.rsplit(".", 1)[-1]
    if short not in JAAS_MODULES:
        raise SettingsError(f"sasl.jaas.config: login module {module!r} is not supported")
    options = {name: _unquote(raw) for name, raw in JAAS_OPTION.findall(config[len(module) :])}
    if short in ("PlainLoginModule", "ScramLoginModule"):
        missing = [o for o in ("username", "password") if o not in options]
        if missing:
            raise SettingsError(f"sasl.jaas.config: {short} without {' and '.join(missing)}")
        return {"kafka_sasl_username": options["username"], "kafka_sasl_password": options["password"]}
    if short == "OAuthBearerLoginModule":
        mapped = {"clientId": "kafka_sasl_oauth_client_id", "clientSecret": "kafka_sasl_oauth_client_secret"}
        out: dict[str, object] = {mapped[k]: v for k, v in options.items() if k in mapped}
        if "scope" in options:
            out["kafka_sasl_oauth_scope"] = options["scope"]
        return out
    return {}  # IAMLoginModule: credentials come from the AWS environment, as with the Java client


def _unquote(raw: str) -> str:
    return shlex.split(raw)[0] if raw.startswith('"') else raw
