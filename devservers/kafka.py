"""A real single-node Apache Kafka broker (KRaft), resolved from Maven Central and run with ``java``.

No Docker needed: ``maven/kafka/pom.xml`` beside this file pins the broker; Maven copies its jars into
``.cache/kafka/libs`` once. A broker lives in one folder (``home``): its log folder is formatted on
the first start only, and its cluster id and ports are kept in ``identity.json``, so stopping and
starting it again keeps every topic, message and committed offset. ``reset=True`` starts afresh.
It listens on 127.0.0.1 (a free port unless told otherwise) and is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devservers.process import LocalServer, ServiceError, free_port, maven_jars, port_in_use, read_recorded

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
POM = HERE / "maven" / "kafka" / "pom.xml"
LIBS = REPO / ".cache" / "kafka" / "libs"
IDENTITY_FILE = "identity.json"
CREDENTIALS_FILE = "credentials.json"  # the secured broker's generated passwords (owner-only)
ADMIN_USER = "admin"  # super user over SASL_SSL
CLIENT_USER = "scorepipe"  # the client properties file's user: every topic, group and transactional id
MTLS_USER = "scorepipe-mtls"  # the client certificate's common name, mapped to User:scorepipe-mtls
SCRAM = "SCRAM-SHA-512"

LOG4J = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


def ensure_jars(libs: Path = LIBS) -> Path:
    """Resolve the broker's jars with Maven into ``libs`` unless they are already there."""
    return maven_jars(POM, libs, marker="kafka_2.13-*.jar", what="the Kafka broker")


@dataclass(frozen=True)
class Listeners:
    """The broker's ports on 127.0.0.1: its own PLAINTEXT and controller listeners, and the secured ones if any."""

    plaintext: int
    controller: int
    sasl: int | None = None  # SASL_SSL (SCRAM-SHA-512)
    mtls: int | None = None  # SSL with client certificates required


@dataclass(frozen=True)
class TlsFiles:
    chain: Path  # the broker's certificate and key (PEM)
    ca: Path  # the CA certificate clients and the broker trust


def broker_properties(
    listeners: Listeners, *, data_dir: Path, partitions: int, tls: TlsFiles | None = None, unsecured_oauth: bool = False
) -> dict[str, str]:
    """A single-node KRaft broker's ``server.properties``: pure, so every listener and setting is unit-tested.

    With ``tls``: SASL_SSL (SCRAM) and mutual-TLS listeners beside PLAINTEXT, and the authorizer.
    The PLAINTEXT and controller listeners carry the broker's own traffic; their principal
    (ANONYMOUS) is a super user, as the broker itself must be. Clients of the secured listeners get
    only what ACLs give them.
    """
    p, c = listeners.plaintext, listeners.controller
    properties = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{c}",
        "listeners": f"PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{p}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": str(partitions),
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "log.retention.hours": "168",
    }
    if tls is None:
        return properties
    if listeners.sasl is None or listeners.mtls is None:
        raise ValueError("a secured broker needs its SASL_SSL and mutual-TLS ports")
    s, m = listeners.sasl, listeners.mtls
    properties.update(
        {
            "listeners": f"PLAINTEXT://127.0.0.1:{p},SASL_SSL://127.0.0.1:{s},SSL://127.0.0.1:{m},"
            f"CONTROLLER://127.0.0.1:{c}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{p},SASL_SSL://127.0.0.1:{s},SSL://127.0.0.1:{m}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL",
            "sasl.enabled.mechanisms": SCRAM + (",OAUTHBEARER" if unsecured_oauth else ""),
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(tls.chain),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(tls.ca),
            "listener.name.ssl.ssl.client.auth": "required",
            "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:ANONYMOUS;User:{ADMIN_USER}",
            "allow.everyone.if.no.acl.found": "false",
        }
    )
    if unsecured_oauth:
        # Kafka's unsecured validator: unsigned tokens whose ``sub`` is the user. For testing token
        # providers only; anyone can claim any name with it.
        properties["listener.name.sasl_ssl.oauthbearer.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
            'unsecuredLoginStringClaim_sub="broker";'
        )
    return properties


def render_properties(properties: dict[str, str]) -> str:
    """A Java properties file: one ``key=value`` line each, in order."""
    return "".join(f"{key}={value}\n" for key, value in properties.items())


class KafkaBroker(LocalServer):
    """One KRaft node (broker and controller) with its data, cluster id and ports under ``home``."""

    STATE_FILE = "broker.json"
    START_TIMEOUT_S = 90.0

    def __init__(
        self,
        home: Path,
        *,
        port: int | None = None,
        partitions: int = 4,
        heap: str = "512m",
        reset: bool = False,
        secure: bool = False,
        tls_hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
        unsecured_oauth: bool = False,
    ):
        self.home = home
        self.reset = reset
        known = {} if reset else read_identity(home)
        self.cluster_id: str = known.get("cluster_id") or uuid.uuid4().hex[:22]
        self.port = port or known.get("port") or free_port()
        self.controller_port = known.get("controller_port") or free_port()
        self.partitions = partitions
        self.secure = secure or bool(known.get("secure"))
        self.tls_hosts = tls_hosts
        # OAUTHBEARER with Kafka's unsecured validator: unsigned tokens, whose ``sub`` is the user.
        # For testing token providers only; anyone can claim any name with it.
        self.unsecured_oauth = unsecured_oauth
        self.sasl_port: int | None = known.get("sasl_port") or (free_port() if self.secure else None)
        self.mtls_port: int | None = known.get("mtls_port") or (free_port() if self.secure else None)
        classpath = f"{ensure_jars()}/*"
        java = [
            "java",
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
            "-cp",
            classpath,
        ]
        self._java = java
        super().__init__(
            "kafka broker",
            [*java, "kafka.Kafka", str(home / "server.properties")],
            env=dict(os.environ),
            log_path=home / "broker.log",
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        """The SASL_SSL (SCRAM-SHA-512) listener of a secured broker."""
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def mtls_bootstrap_servers(self) -> str:
        """The mutual-TLS listener of a secured broker (a client certificate is required)."""
        return f"127.0.0.1:{self.mtls_port}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def tls_dir(self) -> Path:
        return self.home / "tls"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def client_properties(self) -> Path:
        """A client properties file for the SASL_SSL listener (what ``--kafka-config`` takes)."""
        return self.home / "client.properties"

    @property
    def mtls_properties(self) -> Path:
        """A client properties file for the mutual-TLS listener."""
        return self.home / "client-mtls.properties"

    def password(self, user: str) -> str:
        """The generated password of a user made at format time (``admin`` or ``scorepipe``)."""
        return str(_credentials(self.home)[user])

    def sasl_settings(self, user: str = CLIENT_USER, password: str | None = None, **overrides: Any) -> Any:
        """Settings for ``user`` on the SASL_SSL listener, trusting the test CA."""
        from streaming.settings import StreamSettings

        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.sasl_bootstrap_servers,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": SCRAM,
            "kafka_sasl_username": user,
            "kafka_sasl_password": password if password is not None else self.password(user),
            "kafka_ssl_cafile": self.ca_file,
        }
        return StreamSettings(**{**values, **overrides})

    def mtls_settings(self, **overrides: Any) -> Any:
        """Settings for the mutual-TLS listener with the client certificate made at first start."""
        from streaming.settings import StreamSettings

        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.mtls_bootstrap_servers,
            "kafka_security_protocol": "SSL",
            "kafka_ssl_cafile": self.ca_file,
            "kafka_ssl_certfile": self.tls_dir / f"{MTLS_USER}.pem",
            "kafka_ssl_keyfile": self.tls_dir / f"{MTLS_USER}.key",
        }
        return StreamSettings(**{**values, **overrides})

    def admin(self) -> Any:
        """An admin client on the PLAINTEXT listener (a super user there: it also carries broker traffic)."""
        from streaming.settings import KafkaSettings
        from streaming.transport import transport_for

        settings = KafkaSettings(kafka_bootstrap_servers=self.bootstrap_servers)
        return transport_for(settings).admin(settings, request_timeout_ms=10_000)

    def add_user(self, name: str, password: str) -> None:
        """A SCRAM-SHA-512 user on the running broker (no restart), with no ACL yet."""
        admin = self.admin()
        try:
            admin.add_scram_user(name, SCRAM, password)
        finally:
            admin.close()

    def allow(self, user: str, *grants: tuple[str, str, str]) -> None:
        """ACLs for ``User:user``: each grant is (resource type, name or prefix*, operation).

        For example ``("TOPIC", "features", "READ")`` or ``("GROUP", "scorepipe*", "ALL")``.
        """
        _change_acls(self, user, grants, create=True)

    def deny(self, user: str, *grants: tuple[str, str, str]) -> None:
        """Remove ACLs given by ``allow``."""
        _change_acls(self, user, grants, create=False)

    def configure(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        data = self.data_dir
        formatted = (data / "meta.properties").exists()
        if self.secure and formatted and not self.reset and not read_identity(self.home).get("secure"):
            raise ServiceError(
                f"the broker in {self.home} was formatted without its secured listeners (SCRAM users are made "
                "only at format time): start it with --reset to format it afresh"
            )
        if self.reset or not formatted:
            shutil.rmtree(data, ignore_errors=True)
        for port in (self.port, self.controller_port):
            if port_in_use(port):
                raise ServiceError(f"port {port} on 127.0.0.1 is taken: is another broker using {self.home}?")
        ports = [self.port, self.controller_port] + ([self.sasl_port, self.mtls_port] if self.secure else [])
        for port in ports[2:]:
            if port_in_use(port):
                raise ServiceError(f"port {port} on 127.0.0.1 is taken: is another broker using {self.home}?")
        tls = self._issue_certificates() if self.secure else None
        listeners = Listeners(self.port, self.controller_port, self.sasl_port, self.mtls_port)
        properties = broker_properties(
            listeners, data_dir=data, partitions=self.partitions, tls=tls, unsecured_oauth=self.unsecured_oauth
        )
        (self.home / "server.properties").write_text(render_properties(properties))
        (self.home / "log4j2.properties").write_text(LOG4J)
        if not (data / "meta.properties").exists():
            self._format()
        identity = {"cluster_id": self.cluster_id, "port": self.port, "controller_port": self.controller_port}
        if self.secure:
            identity.update(secure=True, sasl_port=self.sasl_port, mtls_port=self.mtls_port)
        (self.home / IDENTITY_FILE).write_text(json.dumps({**identity, "data_dir": str(data)}, indent=2))

    def _issue_certificates(self) -> TlsFiles:
        """The test CA, the broker's certificate and the mutual-TLS client's, and the SCRAM passwords (once)."""
        from devservers.certificates import LocalAuthority

        authority = LocalAuthority(self.tls_dir)
        broker = authority.issue("broker", hosts=self.tls_hosts)
        if not (self.tls_dir / f"{MTLS_USER}.pem").exists():
            authority.issue(MTLS_USER, client=True)
        _ensure_credentials(self.home)
        return TlsFiles(chain=Path(broker.chain), ca=Path(authority.cert_path))

    def _format(self) -> None:
        scram: list[str] = []
        if self.secure:
            for user, password in _credentials(self.home).items():
                scram += ["--add-scram", f"{SCRAM}=[name={user},password={password}]"]
        result = subprocess.run(
            [
                *self._java,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                self.cluster_id,
                "-c",
                str(self.home / "server.properties"),
                *scram,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise ServiceError(f"formatting the Kafka log folder failed:\n{result.stdout}\n{result.stderr}")

    def start(self, timeout: float | None = None) -> KafkaBroker:
        super().start(timeout)
        if self.secure:
            everything = (("TOPIC", "*", "ALL"), ("GROUP", "*", "ALL"), ("TRANSACTIONAL_ID", "*", "ALL"))
            self.allow(CLIENT_USER, *everything)
            self.allow(MTLS_USER, *everything)
            self._write_client_properties()
        return self

    def _write_client_properties(self) -> None:
        """What ``--kafka-config`` takes, for the SASL_SSL and the mutual-TLS listeners (owner-only files)."""
        from devservers.certificates import _write_private

        sasl = (
            f"bootstrap.servers={self.sasl_bootstrap_servers}\n"
            "security.protocol=SASL_SSL\n"
            f"sasl.mechanism={SCRAM}\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{CLIENT_USER}" password="{self.password(CLIENT_USER)}";\n'
            f"ssl.ca.location={self.ca_file}\n"
        )
        mtls = (
            f"bootstrap.servers={self.mtls_bootstrap_servers}\n"
            "security.protocol=SSL\n"
            f"ssl.ca.location={self.ca_file}\n"
            f"ssl.certificate.location={self.tls_dir / (MTLS_USER + '.pem')}\n"
            f"ssl.key.location={self.tls_dir / (MTLS_USER + '.key')}\n"
        )
        _write_private(self.client_properties, sasl.encode())
        _write_private(self.mtls_properties, mtls.encode())

    def ready(self) -> bool:
        """Its port accepts connections and it answers a metadata request."""
        return port_in_use(self.port) and self._answers_metadata()

    def _answers_metadata(self) -> bool:
        from streaming.settings import KafkaSettings
        from streaming.transport import transport_for
        from streaming.transport.base import TransportError

        settings = KafkaSettings(kafka_bootstrap_servers=self.bootstrap_servers)
        try:
            admin = transport_for(settings).admin(settings, request_timeout_ms=5000)
        except TransportError:
            return False
        try:
            admin.describe_cluster()
            return True
        except TransportError:
            return False
        finally:
            admin.close()

    def describe(self) -> dict[str, object]:
        secured = (
            {
                "sasl_bootstrap_servers": self.sasl_bootstrap_servers,
                "mtls_bootstrap_servers": self.mtls_bootstrap_servers,
                "ca_file": str(self.ca_file),
                "client_properties": str(self.client_properties),  # the files hold the password; paths only
                "mtls_properties": str(self.mtls_properties),
            }
            if self.secure
            else {}
        )
        return {"bootstrap_servers": self.bootstrap_servers, **secured}


def _credentials(home: Path) -> dict[str, str]:
    return read_recorded(home / CREDENTIALS_FILE) or {}


def _ensure_credentials(home: Path) -> None:
    """Passwords for the users made at format time, generated once (never in the repository)."""
    from devservers.certificates import _write_private

    if _credentials(home):
        return
    users = {ADMIN_USER: secrets.token_urlsafe(18), CLIENT_USER: secrets.token_urlsafe(18)}
    _write_private(home / CREDENTIALS_FILE, json.dumps(users).encode())


def _change_acls(broker: KafkaBroker, user: str, grants: tuple[tuple[str, str, str], ...], *, create: bool) -> None:
    from streaming.transport.base import TransportError

    admin = broker.admin()
    try:
        admin.change_acls(f"User:{user}", grants, create=create)
    except TransportError as exc:
        raise ServiceError(str(exc)) from exc
    finally:
        admin.close()


def read_identity(home: Path) -> dict:
    """The cluster id and ports a broker in ``home`` was formatted with ({} before its first start)."""
    identity = read_recorded(home / IDENTITY_FILE) or {}
    return identity if (home / "data" / "meta.properties").exists() else {}
