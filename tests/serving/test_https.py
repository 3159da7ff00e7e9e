"""`scorepipe serve` over HTTPS: uvicorn's TLS with a certificate from a test CA, verified by the client."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from devservers.certificates import LocalAuthority
from devservers.process import ManagedProcess, free_port
from scoring import SettingsError, synthetic
from serving.server import tls_options


@pytest.mark.integration
def test_the_api_answers_over_https_to_a_client_that_verifies_the_test_ca(make_registry, tmp_path):
    registry = make_registry()
    authority = LocalAuthority(tmp_path / "ca")
    server_cert = authority.issue("scorepipe-serve", hosts=("127.0.0.1", "localhost"))
    port = free_port()
    env = {**os.environ, "SCOREPIPE_REGISTRY": str(registry.root), "SCOREPIPE_HOME": str(tmp_path / "home")}
    server = ManagedProcess(
        "scorepipe serve (https)",
        [
            sys.executable,
            "-m",
            "scorepipe.cli",
            "serve",
            "--port",
            str(port),
            "--ssl-certfile",
            str(server_cert.cert),
            "--ssl-keyfile",
            str(server_cert.key),
        ],  # fmt: skip
        env=env,
        log_path=tmp_path / "serve.log",
    ).start()
    verified = ssl.create_default_context(cafile=str(authority.cert_path))
    url = f"https://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return urllib.request.urlopen(f"{url}/v2/health/ready", context=verified, timeout=5).status == 200
        except OSError:
            return False

    try:
        server.wait_until(ready, timeout=60, what="ready over HTTPS")
        row = synthetic.generate(1, seed=3, with_target=False).drop(columns=[synthetic.ID_COLUMN])
        body = json.dumps(row.to_dict("records")[0]).encode()
        request = urllib.request.Request(f"{url}/predict", data=body, headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, context=verified, timeout=10).read())
        assert answer["model_version"] == 1 and set(answer["probabilities"]) == {"0", "1"}
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(f"{url}/v2/health/ready", context=ssl.create_default_context(), timeout=5)
        with pytest.raises(OSError):  # plain HTTP on the TLS port gets no answer
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5)
    finally:
        server.stop()


def test_a_missing_or_mismatched_certificate_is_named_before_serving(tmp_path):
    authority = LocalAuthority(tmp_path / "ca")
    one, other = authority.issue("one", hosts=("127.0.0.1",)), authority.issue("other", hosts=("127.0.0.1",))
    with pytest.raises(SettingsError, match="--ssl-keyfile: no such file"):
        tls_options(one.cert, tmp_path / "absent.key", None)
    with pytest.raises(SettingsError, match="cannot be used: KEY_VALUES_MISMATCH"):
        tls_options(one.cert, other.key, None)
    result = subprocess.run(
        [sys.executable, "-m", "scorepipe.cli", "serve", "--ssl-certfile", str(one.cert)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "SCOREPIPE_HOME": str(tmp_path / "h")},
    )  # fmt: skip
    assert result.returncode == 1 and "HTTPS needs both --ssl-certfile and --ssl-keyfile" in result.stdout
