"""Kafka client properties files (Confluent Cloud, MSK, Aiven, librdkafka) mapped onto validated settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from scorepipe.settings import Settings, load_settings
from scoring import SettingsError
from streaming.kafka_properties import parse_properties, settings_from_properties

CONFLUENT_CLOUD = """\
# Required connection configs for Kafka producer, consumer, and admin
bootstrap.servers=pkc-abc12.eu-west-1.aws.confluent.cloud:9092
security.protocol=SASL_SSL
sasl.mechanisms=PLAIN
sasl.username=ABCDEFGH12345678
sasl.password=cflt/secret+value==
# Best practice for higher availability in librdkafka clients prior to 1.7
session.timeout.ms=45000
client.dns.lookup=use_all_dns_ips
acks=all
"""

JAVA_SCRAM = """\
bootstrap.servers = kafka-1.internal:9094, kafka-2.internal:9094
security.protocol: SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\
    username="svc-scorer" \\
    password="p@ss w=rd;";
ssl.ca.location=/etc/kafka/ca.pem
ssl.endpoint.identification.algorithm=
"""


def write(tmp_path: Path, text: str, name: str = "client.properties") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_confluent_cloud_file_maps_onto_the_settings(tmp_path):
    settings = Settings(kafka_config=write(tmp_path, CONFLUENT_CLOUD))
    assert settings.kafka_bootstrap_servers == "pkc-abc12.eu-west-1.aws.confluent.cloud:9092"
    assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism) == ("SASL_SSL", "PLAIN")
    assert settings.kafka_sasl_username == "ABCDEFGH12345678"
    assert settings.kafka_sasl_password.get_secret_value() == "cflt/secret+value=="
    assert settings.stream_session_timeout_ms == 45000
    assert "cflt/secret" not in repr(settings) and "cflt/secret" not in str(settings.model_dump())


def test_a_java_jaas_line_with_continuations_quotes_and_a_skipped_host_check(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("ca")
    text = JAVA_SCRAM.replace("/etc/kafka/ca.pem", str(ca))
    values = settings_from_properties(write(tmp_path, text))
    assert values == {
        "kafka_bootstrap_servers": "kafka-1.internal:9094, kafka-2.internal:9094",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "svc-scorer",
        "kafka_sasl_password": "p@ss w=rd;",
        "kafka_ssl_cafile": ca,
        "kafka_ssl_check_hostname": False,
    }


def test_msk_iam_and_oauth_files(tmp_path):
    msk = write(
        tmp_path,
        "bootstrap.servers=b-1.msk:9098\nsecurity.protocol=SASL_SSL\nsasl.mechanism=AWS_MSK_IAM\n"
        "sasl.jaas.config=software.amazon.msk.auth.iam.IAMLoginModule required;\n"
        "sasl.client.callback.handler.class=software.amazon.msk.auth.iam.IAMClientCallbackHandler\n",
        "msk.properties",
    )
    with pytest.raises(SettingsError, match=r"msk.properties:5: unknown or unsupported key 'sasl.client.callback"):
        Settings(kafka_config=msk)
    msk.write_text("\n".join(msk.read_text().splitlines()[:4]) + "\n")
    assert Settings(kafka_config=msk).kafka_sasl_mechanism == "AWS_MSK_IAM"

    oauth = write(
        tmp_path,
        "security.protocol=SASL_SSL\nsasl.mechanism=OAUTHBEARER\n"
        "sasl.oauthbearer.token.endpoint.url=https://idp.example/realms/kafka/protocol/openid-connect/token\n"
        "sasl.login.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler\n"
        "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
        'clientId="scorer" clientSecret="xyz" scope="kafka";\n',
        "oauth.properties",
    )
    settings = Settings(kafka_config=oauth)
    assert settings.kafka_sasl_oauth_token_url.endswith("/openid-connect/token")
    assert (settings.kafka_sasl_oauth_client_id, settings.kafka_sasl_oauth_scope) == ("scorer", "kafka")
    assert settings.kafka_sasl_oauth_client_secret.get_secret_value() == "xyz"


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("ssl.truststore.location=/etc/kafka/truststore.jks", "ssl.truststore.location: a Java truststore"),
        ("sasl.kerberos.service.name=kafka", "GSSAPI (Kerberos) is not supported"),
        ("linger.ms=5", "unknown or unsupported key 'linger.ms'"),
        ("acks=1", "acks='1' is not supported"),
        ("ssl.endpoint.identification.algorithm=ldap", "expected https"),
        ("sasl.jaas.config=com.example.CustomLoginModule required;", "login module 'com.example.CustomLoginModule'"),
    ],
)
def test_a_key_that_cannot_be_honoured_is_named_with_its_line(tmp_path, line, named):
    path = write(tmp_path, f"bootstrap.servers=k:9092\n# comment\n{line}\n")
    with pytest.raises(SettingsError) as refused:
        settings_from_properties(path)
    assert f"{path}:3: " in str(refused.value) and named in str(refused.value)


def test_explicit_settings_win_over_the_file_from_the_environment_and_from_overrides(tmp_path, monkeypatch):
    path = write(tmp_path, CONFLUENT_CLOUD)
    monkeypatch.setenv("SCOREPIPE_KAFKA_CONFIG", str(path))
    monkeypatch.setenv("SCOREPIPE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:19092"  # the variable wins
    assert settings.kafka_sasl_username == "ABCDEFGH12345678"  # the file fills the rest
    monkeypatch.delenv("SCOREPIPE_KAFKA_CONFIG")
    monkeypatch.delenv("SCOREPIPE_KAFKA_BOOTSTRAP_SERVERS")
    overridden = Settings().model_copy(update={"kafka_config": path, "kafka_sasl_username": "cli-user"})
    assert (overridden.kafka_sasl_username, overridden.kafka_bootstrap_servers) == (
        "cli-user",
        "pkc-abc12.eu-west-1.aws.confluent.cloud:9092",
    )


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(SettingsError, match=r"kafka_config: cannot read .*nowhere.properties"):
        Settings(kafka_config=tmp_path / "nowhere.properties")


def test_the_parser_reads_java_separators_comments_and_continuations():
    text = "a=1\n! bang comment\nb: 2\nc 3\n  d = 4 \\\n    5\n\ne=\n"
    assert parse_properties(text) == [(1, "a", "1"), (3, "b", "2"), (4, "c", "3"), (5, "d", "4 5"), (8, "e", "")]


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"kafka_security_protocol": "SASL_SSLL"}, "Input should be 'PLAINTEXT', 'SSL'"),
        ({"kafka_security_protocol": "SASL_SSL"}, "SASL_SSL needs kafka_sasl_mechanism"),
        (
            {"kafka_sasl_mechanism": "PLAIN"},
            "kafka_sasl_mechanism PLAIN is set but kafka_security_protocol is PLAINTEXT",
        ),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "SCRAM-SHA-512",
                "kafka_sasl_username": "u",
            },
            "SCRAM-SHA-512 needs kafka_sasl_password",
        ),
        ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "AWS_MSK_IAM"}, "needs kafka_security"),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "OAUTHBEARER"},
            "OAUTHBEARER needs kafka_sasl_oauth_token_url",
        ),
        ({"kafka_ssl_cafile": "/etc/ca.pem"}, "kafka_ssl_cafile is set but kafka_security_protocol is PLAINTEXT"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nowhere/ca.pem"}, "kafka_ssl_cafile: no such file"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "Input should be 'PLAIN'"),
    ],
)
def test_contradictory_or_incomplete_security_settings_are_named(values, problem, monkeypatch):
    for name, value in values.items():
        monkeypatch.setenv(f"SCOREPIPE_{name.upper()}", str(value))
    with pytest.raises(SettingsError, match="invalid setting") as refused:
        load_settings()
    assert problem in str(refused.value)


def test_a_secret_never_appears_in_a_settings_error(monkeypatch):
    monkeypatch.setenv("SCOREPIPE_KAFKA_SASL_PASSWORD", "hunter2-visible?")
    monkeypatch.setenv("SCOREPIPE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "hunter2" not in str(refused.value)
    monkeypatch.delenv("SCOREPIPE_KAFKA_SECURITY_PROTOCOL")
    with pytest.raises(SettingsError) as refused:
        Settings().model_copy(update={"kafka_sasl_password": "hunter2-visible?", "kafka_security_protocol": "SASL"})
    assert "hunter2" not in str(refused.value)
