"""The local broker's server.properties, rendered without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from devservers.kafka import Listeners, TlsFiles, broker_properties, render_properties

PLAIN = Listeners(plaintext=9092, controller=9093)
SECURED = Listeners(plaintext=9092, controller=9093, sasl=9094, mtls=9095)
TLS = TlsFiles(chain=Path("/tls/broker.pem"), ca=Path("/tls/ca.pem"))


def test_a_plain_broker_listens_on_loopback_only_with_replication_one_for_every_internal_topic():
    properties = broker_properties(PLAIN, data_dir=Path("/data"), partitions=4)
    assert properties["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert properties["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert (properties["log.dirs"], properties["num.partitions"]) == ("/data", "4")
    factors = {k: v for k, v in properties.items() if k.endswith((".replication.factor", ".min.isr"))}
    assert len(factors) == 5 and set(factors.values()) == {"1"}
    assert "authorizer.class.name" not in properties and "sasl.enabled.mechanisms" not in properties


def test_a_secured_broker_adds_sasl_ssl_and_mutual_tls_listeners_and_enforces_acls():
    properties = broker_properties(SECURED, data_dir=Path("/data"), partitions=4, tls=TLS)
    assert properties["listeners"] == (
        "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9094,SSL://127.0.0.1:9095,CONTROLLER://127.0.0.1:9093"
    )
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert properties["listener.name.ssl.ssl.client.auth"] == "required"
    assert (properties["ssl.keystore.location"], properties["ssl.truststore.location"]) == (
        "/tls/broker.pem",
        "/tls/ca.pem",
    )
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert properties["super.users"] == "User:ANONYMOUS;User:admin"
    assert not any("oauthbearer" in key for key in properties)


def test_unsigned_oauth_tokens_are_accepted_only_when_asked_for():
    properties = broker_properties(SECURED, data_dir=Path("/d"), partitions=1, tls=TLS, unsecured_oauth=True)
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512,OAUTHBEARER"
    assert 'unsecuredLoginStringClaim_sub="broker"' in properties["listener.name.sasl_ssl.oauthbearer.sasl.jaas.config"]


def test_a_secured_broker_without_its_ports_is_refused():
    with pytest.raises(ValueError, match="SASL_SSL and mutual-TLS ports"):
        broker_properties(PLAIN, data_dir=Path("/d"), partitions=1, tls=TLS)


def test_properties_render_one_line_each_in_order():
    assert render_properties({"a.b": "1", "c": "x=y"}) == "a.b=1\nc=x=y\n"
