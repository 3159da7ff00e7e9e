"""A real S3 API server for local runs and tests: S3Proxy on its filesystem backend, run with ``java``.

No Docker needed: ``maven/s3proxy/pom.xml`` beside this file pins the server; Maven copies its jars into
``.cache/s3proxy/libs`` once. A server lives in one folder (``home``): objects under ``data/``,
its port and its credentials in ``identity.json`` (made up on the first start, readable by the
owner only; nothing secret is in the repository). It listens on 127.0.0.1 and is stopped by its PID.
Clients reach it through the usual AWS variables, which ``client_env`` returns.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path

from devservers.process import LocalServer, free_port, maven_jars, read_recorded

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
POM = HERE / "maven" / "s3proxy" / "pom.xml"
LIBS = REPO / ".cache" / "s3proxy" / "libs"
IDENTITY_FILE = "identity.json"
REGION = "us-east-1"

LOGBACK = """\
<configuration>
  <appender name="OUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d %-5level %logger{20} - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.gaul.s3proxy" level="INFO"/>
  <root level="WARN"><appender-ref ref="OUT"/></root>
</configuration>
"""


def ensure_jars(libs: Path = LIBS) -> Path:
    return maven_jars(POM, libs, marker="s3proxy-*.jar", what="the S3Proxy server")


class S3Server(LocalServer):
    """One S3Proxy process serving the buckets under ``home/data`` on a loopback port."""

    def __init__(self, home: Path, *, port: int | None = None, heap: str = "256m"):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        identity = read_recorded(home / IDENTITY_FILE) or {}
        self.port = port or identity.get("port") or free_port()
        self.access_key = identity.get("access_key") or f"scorepipe-{secrets.token_hex(4)}"
        self.secret_key = identity.get("secret_key") or secrets.token_urlsafe(24)
        java = ["java", f"-Xmx{heap}", f"-Dlogback.configurationFile={home / 'logback.xml'}"]
        super().__init__(
            "s3proxy",
            [*java, "-cp", f"{ensure_jars()}/*", "org.gaul.s3proxy.Main", "--properties", str(home / "s3proxy.conf")],
            env=dict(os.environ),
            log_path=home / "s3proxy.log",
        )

    @property
    def endpoint(self) -> str:
        return self.url

    def describe(self) -> dict[str, object]:
        return {"endpoint": self.endpoint}

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def client_env(self) -> dict[str, str]:
        """The AWS variables that point pyarrow, boto3 and the aws CLI at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def configure(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        properties = {
            "s3proxy.endpoint": self.endpoint,
            "s3proxy.authorization": "aws-v2-or-v4",
            "s3proxy.identity": self.access_key,
            "s3proxy.credential": self.secret_key,
            "jclouds.provider": "filesystem-nio2",
            "jclouds.filesystem.basedir": str(self.data_dir),
        }
        config = self.home / "s3proxy.conf"
        config.touch(mode=0o600)
        config.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        (self.home / "logback.xml").write_text(LOGBACK)
        identity = self.home / IDENTITY_FILE
        identity.touch(mode=0o600)
        identity.write_text(
            json.dumps({"port": self.port, "access_key": self.access_key, "secret_key": self.secret_key}, indent=2)
        )

    def create_bucket(self, name: str) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
        )
        client.create_bucket(Bucket=name)

    def ready(self) -> bool:
        """Any S3 answer (an unsigned request is refused with 403) means the server is up."""
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
