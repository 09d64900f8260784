"""The image server's TLS context, loaded from the PKCS#12 that ``get_cert`` returns.

docs/hath-protocol.md §5: the body of ``get_cert`` is PKCS#12, password = the client key, saved as
``data/hathcert.p12`` (J162 ``HTTPServer.startConnectionListener``). A certificate that expires
within 24 h is refused (J162 ``isCertExpired``).

Live swap on ``refresh_certs`` (RS hot-swaps too; Java restarts its listener): the blocking
half, :meth:`CertHolder.prepare` (run in a worker thread), decodes the PKCS#12 and loads it into
a *new* ``ssl.SSLContext``; the live context is never touched from a thread. The Trio thread
then calls :meth:`CertHolder.swap`, which replaces :attr:`CertHolder.context` in one assignment.
The image server reads that attribute for each new connection, so connections accepted
afterwards present the new certificate while connections in flight keep their own context, and
the listener is never closed (tested in ``tests/hath/test_node.py``).

Errors: anything wrong with the PKCS#12 (not PKCS#12, wrong password, no key or certificate, a
key that does not match the certificate, expiring within 24 h) is a
:class:`~hathd.hath.protocol.ProtocolError`, and the current certificate stays in use.
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


def server_context() -> ssl.SSLContext:
    """A fresh server ``SSLContext``: TLS 1.2+, ALPN ``http/1.1``, no certificate yet."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


@attrs.frozen
class PreparedCert:
    """A loaded certificate, ready for :meth:`CertHolder.swap`."""

    context: ssl.SSLContext
    info: CertInfo


def load_context(data: bytes, password: str, tmp_dir: Path) -> PreparedCert:
    """A new server context holding the PKCS#12 ``data`` (``password`` = the client key); the
    key passes through a 0600 temporary file in ``tmp_dir`` (``load_cert_chain`` reads files
    only), removed at once. Saves nothing else (serving processes load the owner's
    certificate with it). Blocking.

    :raises ProtocolError: bad PKCS#12, a key that does not match the certificate, or a
        certificate expiring within 24 h.
    """
    pem, info = decode_pkcs12(data, password)
    if expires_soon(info):
        raise ProtocolError(f"certificate expires at {info.not_after:%Y-%m-%d %H:%M} UTC")
    context = server_context()
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=".hathcert-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        context.load_cert_chain(name)
    except ssl.SSLError as exc:
        raise ProtocolError(f"get_cert PKCS#12 does not load: {exc}") from None
    finally:
        os.unlink(name)
    return PreparedCert(context, info)


class CertHolder:
    """Owns the server ``SSLContext`` (TLS 1.2+, HTTP/1.1 ALPN) and swaps in new ones.

    :attr:`context` is the context for new connections (one without a certificate until the
    first :meth:`swap`); :attr:`info` describes its certificate; :attr:`swaps` counts the
    replacements after the first.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.context = server_context()
        self.info: CertInfo | None = None
        self.swaps = 0

    def prepare(self, data: bytes, password: str) -> PreparedCert:
        """Load a PKCS#12 (``get_cert`` body, ``password`` = the client key) into a new context
        and save it as ``data/hathcert.p12`` (0600, through a temporary file and a rename).

        Blocking (small file I/O, key parsing): call through ``trio.to_thread.run_sync``. It
        never touches :attr:`context`.

        :raises ProtocolError: bad PKCS#12, a key that does not match the certificate, or a
            certificate expiring within 24 h (nothing is saved then).
        :raises OSError: ``data/hathcert.p12`` cannot be written.
        """
        prepared = load_context(data, password, self.data_dir)
        p12 = self.data_dir / "hathcert.p12"
        tmp = p12.with_suffix(".p12.tmp")
        try:
            tmp.write_bytes(data)
            tmp.chmod(0o600)
            os.replace(tmp, p12)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        return prepared

    def swap(self, prepared: PreparedCert) -> CertInfo:
        """Make ``prepared`` the context for new connections. Call on the Trio thread (one
        attribute assignment: a connection sees the old context or the new one)."""
        self.context = prepared.context
        if self.info is not None:
            self.swaps += 1
        self.info = prepared.info
        return prepared.info

    def install(self, data: bytes, password: str) -> CertInfo:
        """:meth:`prepare` then :meth:`swap`, in the calling thread (for tools and tests that
        run no server). :raises ProtocolError: :raises OSError: as :meth:`prepare`."""
        return self.swap(self.prepare(data, password))


def leaf_of(pem: bytes) -> x509.Certificate:
    """The first certificate in a PEM blob (helper for tests and status)."""
    return x509.load_pem_x509_certificate(pem)
