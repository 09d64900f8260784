"""The image server's TLS context, loaded from the PKCS#12 that ``get_cert`` returns.

hath-protocol.md §5: the body of ``get_cert`` is PKCS#12, password = the client key, saved as
``data/hathcert.p12`` (J162 ``HTTPServer.startConnectionListener``). A certificate that expires
within 24 h is refused (J162 ``isCertExpired``).

Live swap on ``refresh_certs``: :meth:`CertHolder.install` calls ``load_cert_chain`` on the
*same* ``ssl.SSLContext`` the listener uses. OpenSSL copies the certificate into each ``SSL``
object when it is created, so connections accepted afterwards present the new certificate while
connections in flight keep the one they were handshaken with, and the listener is never closed
(tested in ``tests/hath/test_node.py``).
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import tempfile
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from hathd.hath.protocol import ProtocolError

EXPIRY_MARGIN = dt.timedelta(hours=24)


@attrs.frozen
class CertInfo:
    """What was loaded: the leaf's serial number, subject and expiry (UTC)."""

    serial: int
    subject: str
    not_after: dt.datetime


def decode_pkcs12(data: bytes, password: str) -> tuple[bytes, CertInfo]:
    """Decode a PKCS#12 blob into one PEM (key + leaf + chain) and the leaf's :class:`CertInfo`.

    :raises ProtocolError: not PKCS#12, wrong password, or no key/certificate inside.
    """
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password.encode("ascii"))
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"get_cert reply is not a PKCS#12 for this key: {exc}") from None
    if key is None or cert is None:
        raise ProtocolError("get_cert PKCS#12 holds no key or no certificate")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem += cert.public_bytes(serialization.Encoding.PEM)
    for c in extra or ():
        pem += c.public_bytes(serialization.Encoding.PEM)
    info = CertInfo(cert.serial_number, cert.subject.rfc4514_string(), cert.not_valid_after_utc)
    return pem, info


def expires_soon(info: CertInfo, now: dt.datetime | None = None) -> bool:
    """True if the certificate expires within 24 h (J162 ``isCertExpired``; §5)."""
    current = now or dt.datetime.now(dt.UTC)
    return info.not_after < current + EXPIRY_MARGIN


class CertHolder:
    """Owns the server ``SSLContext`` (TLS 1.2+, HTTP/1.1 ALPN) and swaps its certificate."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_alpn_protocols(["http/1.1"])
        self.info: CertInfo | None = None
        self.swaps = 0

    def install(self, data: bytes, password: str) -> CertInfo:
        """Load a PKCS#12 into the live context and save it as ``data/hathcert.p12`` (0600).

        Blocking (small file I/O); call through ``trio.to_thread.run_sync`` if needed.

        :raises ProtocolError: bad PKCS#12 or a certificate expiring within 24 h.
        """
        pem, info = decode_pkcs12(data, password)
        if expires_soon(info):
            raise ProtocolError(f"certificate expires at {info.not_after:%Y-%m-%d %H:%M} UTC")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.data_dir, prefix=".hathcert-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            self.context.load_cert_chain(name)
        finally:
            os.unlink(name)
        p12 = self.data_dir / "hathcert.p12"
        tmp = p12.with_suffix(".p12.tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o600)
        os.replace(tmp, p12)
        if self.info is not None:
            self.swaps += 1
        self.info = info
        return info


def leaf_of(pem: bytes) -> x509.Certificate:
    """The first certificate in a PEM blob (helper for tests and status)."""
    return x509.load_pem_x509_certificate(pem)
