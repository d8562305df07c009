"""The cluster's certificates: a CA of its own, and one certificate per daemon.

`cluster up` makes them here, on the launcher's host, with the `cryptography` package
(paramiko's dependency); worker hosts never import this module: they get their PEM text
over SSH, with the secret, and use only the stdlib's `ssl` (`protocol.TLS`). The CA's key
stays in `[manager] workdir/tls/ca.key` (0600), so a later `cluster up` can add hosts to a cluster
that is already running. Certificates are ECDSA P-256: fast to make, fast to handshake.

Names are not checked by peers (see `protocol._tls_context`), so the names here only say
which cluster and which daemon a certificate belongs to, for whoever reads one.
"""

from __future__ import annotations

import datetime
import os
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hstream import protocol
from hstream.errors import HstreamError

CA_DAYS = 3650
CERT_DAYS = 825


@dataclass(frozen=True)
class CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def cluster(self) -> str:
        """The cluster's name in its certificates: the CA's organization."""
        names = self.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        return str(names[0].value) if names else "hstream"


def load_or_create_ca(cert_path: str, key_path: str) -> CA:
    """The cluster's CA, made (key 0600, in a 0700 directory) if there is none yet."""
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return _load_ca(cert_path, key_path)
    directory = os.path.dirname(key_path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    ca = _new_ca()
    _write(key_path, ca.key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), 0o600)
    _write(cert_path, ca.pem.encode("ascii"), 0o644)
    return ca


def _load_ca(cert_path: str, key_path: str) -> CA:
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError) as e:
        raise HstreamError(f"cannot read the cluster CA in {os.path.dirname(cert_path)}: {e} "
                           "(remove the directory to make a new one)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise HstreamError(f"{key_path}: not an EC key")
    return CA(cert, key)


def _write(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def _name(cluster: str, common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _new_ca() -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"hstream cluster {secrets.token_hex(8)}", "hstream cluster CA")
    cert = (_builder(name, name, key.public_key(), CA_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return CA(cert, key)


def issue(ca: CA, daemon: str) -> protocol.TLS:
    """A certificate and key for one daemon ("manager", or a worker's id), signed by `ca`;
    with the CA's certificate, as `protocol.TLS` (PEM text, to be sent, never written)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(ca.cluster, f"hstream {daemon}"), ca.cert.subject, key.public_key(),
                     CERT_DAYS)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return protocol.TLS(ca.pem, cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
                        key_pem.decode("ascii"))


def _builder(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey,
             days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))
