"""A throwaway certificate authority for the local secured broker: made at its first start, never shipped.

The CA signs a broker certificate (with the IP address 127.0.0.1 among its names: Python checks
the host it connected to, and that is an address) and client certificates for mutual TLS. Keys
are unencrypted PEM files readable by their owner only: the broker reads them as a PEM keystore
(Java 17 cannot read PBES2-encrypted PEM keys), the Python client as files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 365


@dataclass(frozen=True)
class Identity:
    """A certificate and its private key on disk (PEM); ``chain`` is the certificate followed by the CA's."""

    cert: Path
    key: Path
    chain: Path


class LocalAuthority:
    """A CA in ``folder`` (``ca.pem``, ``ca-key.pem``), made on first use and reused after."""

    def __init__(self, folder: Path, name: str = "scorepipe test CA") -> None:
        self.folder = folder
        self.cert_path = folder / "ca.pem"
        key_path = folder / "ca-key.pem"
        if self.cert_path.exists() and key_path.exists():
            self._key: ec.EllipticCurvePrivateKey
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)  # made by this class
            self._key = loaded
            self._cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            return
        folder.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        _write_private(key_path, _pem_key(self._key))
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, hosts: tuple[str, ...] = (), client: bool = False) -> Identity:
        """A certificate for ``name`` (its common name), valid for ``hosts`` (names or IP addresses)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(h) for h in hosts]), False)
        cert = builder.sign(self._key, hashes.SHA256())
        stem = self.folder / name
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        ca_pem = self._cert.public_bytes(serialization.Encoding.PEM)
        identity = Identity(
            cert=stem.with_suffix(".pem"), key=stem.with_suffix(".key"), chain=stem.with_suffix(".chain.pem")
        )
        identity.cert.write_bytes(cert_pem)
        _write_private(identity.key, _pem_key(key))
        # The broker's PEM keystore: the key, then the certificate chain.
        _write_private(identity.chain, _pem_key(key) + cert_pem + ca_pem)
        return identity


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (created so, never world-readable in between)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
