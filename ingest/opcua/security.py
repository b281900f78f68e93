"""Secure connections: policy and mode as configured or refused, a pinned server certificate, validity dates.

When a policy other than None is configured the client never falls back to None: it looks the server's
endpoints up over an unsecured *discovery* request (allowed by OPC UA, no session, no data), refuses the server
when it offers no endpoint with that policy and mode, when its certificate differs from the pinned
``server_certificate`` (untrusted) or, with ``trust_dir`` instead, is not issued by one of the folder's CA
certificates or is revoked by one of its CRLs, or when a certificate (the server's or our own) is expired or not yet valid.
Each refusal is an :class:`~ingest.exceptions.OpcUaSecurityError` that says which and why; it is not retried.

The client announces ``security.application_uri`` (default ``urn:vigil:collector``) as its ApplicationUri, and
its certificate must carry the same URI in its subjectAltName, or servers refuse it
(``BadCertificateUriInvalid``). :func:`make_client_certificate` (``vigil opcua cert``) writes such a pair; a
configured certificate without the URI is refused before connecting, naming both.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.ua.uaerrors import UaError
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ingest.exceptions import OpcUaError, OpcUaSecurityError
from vigil.config import OpcUaSecurity

log = logging.getLogger(__name__)

POLICY_CLASSES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}


def load_certificate(path: Path) -> x509.Certificate:
    """A certificate from a PEM or DER file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OpcUaSecurityError(f"cannot read certificate {path}: {exc}") from exc
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise OpcUaSecurityError(f"{path} is not a PEM or DER certificate: {exc}") from exc


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()[:16]


def check_validity(cert: x509.Certificate, what: str, now: datetime | None = None) -> None:
    """Refuse an expired or not-yet-valid certificate, naming it and its dates."""
    now = now or datetime.now(UTC)
    if now > cert.not_valid_after_utc:
        raise OpcUaSecurityError(
            f"{what} certificate {cert.subject.rfc4514_string()} (sha256 {fingerprint(cert)}) expired on "
            f"{cert.not_valid_after_utc.isoformat()}; refusing to connect"
        )
    if now < cert.not_valid_before_utc:
        raise OpcUaSecurityError(
            f"{what} certificate {cert.subject.rfc4514_string()} is not valid before "
            f"{cert.not_valid_before_utc.isoformat()}; refusing to connect"
        )


def certificate_uris(cert: x509.Certificate) -> list[str]:
    """The URIs in a certificate's subjectAltName (an OPC UA application's ApplicationUri is one of them)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(san.value.get_values_for_type(x509.UniformResourceIdentifier))


def check_application_uri(cert: x509.Certificate, application_uri: str, path: Path | str) -> None:
    """Refuse a client certificate that does not carry the configured application URI."""
    uris = certificate_uris(cert)
    if application_uri not in uris:
        raise OpcUaSecurityError(
            f"client certificate {path} carries the URI(s) {', '.join(uris) or '(none)'}, not the configured "
            f"security.application_uri {application_uri!r}; servers refuse that (BadCertificateUriInvalid). "
            f"Make one with `vigil opcua cert` or set application_uri to the certificate's URI"
        )


def make_client_certificate(
    certificate: Path,
    private_key: Path,
    application_uri: str,
    common_name: str = "Vigil collector",
    hostname: str | None = None,
    days: int = 730,
    key_size: int = 2048,
) -> x509.Certificate:
    """Write a self-signed OPC UA client certificate (DER) and its key (PEM, unencrypted, mode 0600).

    The subjectAltName holds the application URI and the host name, the key usages are those OPC UA Part 6
    asks of an application instance certificate. The server's administrator trusts this certificate (copies it
    into the server's trusted folder).
    """
    hostname = hostname or socket.gethostname()
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(application_uri), x509.DNSName(hostname)]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    certificate.parent.mkdir(parents=True, exist_ok=True)
    private_key.parent.mkdir(parents=True, exist_ok=True)
    certificate.write_bytes(cert.public_bytes(Encoding.DER))
    pem = key.private_bytes(Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    # Created 0600 from the start: the key is never readable by others, not even for a moment.
    fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    private_key.chmod(0o600)
    return cert


def _first_cert(der: bytes) -> bytes:
    # A server may send its certificate followed by its chain; the first DER SEQUENCE is its own.
    length = int.from_bytes(der[2:4], "big") + 4
    return der[:length]


def load_trust_dir(folder: Path) -> tuple[list[x509.Certificate], list[x509.CertificateRevocationList]]:
    """The certificates (``.der``, ``.pem``, ``.crt``, ``.cer``) and CRLs (``.crl``) of a trust folder."""
    if not folder.is_dir():
        raise OpcUaSecurityError(f"trust_dir {folder} is not a folder")
    certs: list[x509.Certificate] = []
    crls: list[x509.CertificateRevocationList] = []
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if suffix in (".der", ".pem", ".crt", ".cer"):
            certs.append(load_certificate(path))
        elif suffix == ".crl":
            data = path.read_bytes()
            try:
                pem = data.lstrip().startswith(b"-----BEGIN")
                crls.append(x509.load_pem_x509_crl(data) if pem else x509.load_der_x509_crl(data))
            except ValueError as exc:
                raise OpcUaSecurityError(f"{path} is not a PEM or DER CRL: {exc}") from exc
    if not certs:
        raise OpcUaSecurityError(f"trust_dir {folder} holds no certificate (.der, .pem, .crt, .cer)")
    return certs, crls


def check_trusted(presented: x509.Certificate, folder: Path, now: datetime | None = None) -> None:
    """Accept a server certificate issued by a certificate of ``folder`` (or one of them), valid and not revoked."""
    certs, crls = load_trust_dir(folder)
    what = f"{presented.subject.rfc4514_string()} (sha256 {fingerprint(presented)})"
    der = presented.public_bytes(Encoding.DER)
    issuers = [c for c in certs if c.public_bytes(Encoding.DER) == der]
    for ca in certs:
        if issuers:
            break
        try:
            presented.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        check_validity(ca, "issuing CA", now)
        issuers.append(ca)
    if not issuers:
        raise OpcUaSecurityError(
            f"untrusted server certificate: {what} is not issued by any certificate in trust_dir {folder}; "
            "refusing to connect"
        )
    issuer = issuers[0]
    for crl in crls:
        if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            continue
        revoked = crl.get_revoked_certificate_by_serial_number(presented.serial_number)
        if revoked is not None:
            raise OpcUaSecurityError(
                f"revoked server certificate: {what} was revoked on {revoked.revocation_date_utc.isoformat()} "
                f"(CRL of {issuer.subject.rfc4514_string()} in {folder}); refusing to connect"
            )
    check_validity(presented, "server", now)


async def verify_server(endpoint: str, security: OpcUaSecurity, timeout_s: float) -> bytes:
    """Check what the server offers against the configuration before any secure session is attempted; the
    server certificate (DER) that was checked."""
    if security.server_certificate is None and security.trust_dir is None:
        raise OpcUaSecurityError("a security policy needs server_certificate or trust_dir")
    discovery = Client(endpoint, timeout=timeout_s)
    try:
        endpoints = await discovery.connect_and_get_server_endpoints()
    except (OSError, TimeoutError, UaError) as exc:
        raise OpcUaError(f"cannot list the endpoints of {endpoint}: {exc!r}") from exc
    uri = POLICY_CLASSES[security.policy].URI
    mode = MODES[security.mode]
    matching = [e for e in endpoints if e.SecurityPolicyUri == uri and e.SecurityMode == mode]
    if not matching:
        offered = sorted({f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}" for e in endpoints})
        raise OpcUaSecurityError(
            f"{endpoint} offers no endpoint with policy {security.policy} and mode {security.mode} "
            f"(offered: {', '.join(offered)}); not falling back to a weaker one"
        )
    presented_der = matching[0].ServerCertificate
    if not presented_der:
        raise OpcUaSecurityError(f"{endpoint} presents no certificate for {security.policy}/{security.mode}")
    presented = x509.load_der_x509_certificate(_first_cert(presented_der))
    if security.server_certificate is None:
        assert security.trust_dir is not None
        check_trusted(presented, security.trust_dir)
        return presented.public_bytes(Encoding.DER)
    pinned = load_certificate(security.server_certificate)
    if presented.public_bytes(Encoding.DER) != pinned.public_bytes(Encoding.DER):
        raise OpcUaSecurityError(
            f"untrusted server certificate: {endpoint} presents {presented.subject.rfc4514_string()} "
            f"(sha256 {fingerprint(presented)}), the pinned one is {security.server_certificate} "
            f"(sha256 {fingerprint(pinned)}); refusing to connect"
        )
    check_validity(presented, "server")
    return presented.public_bytes(Encoding.DER)


async def apply_security(client: Any, endpoint: str, security: OpcUaSecurity, timeout_s: float) -> None:
    """Configure a fresh client with the configured policy, certificates and user; refuse what is unsafe."""
    client.application_uri = security.application_uri
    if security.policy != "None":
        assert security.certificate is not None and security.private_key is not None  # the config validated it
        own = load_certificate(security.certificate)
        check_validity(own, "client")
        check_application_uri(own, security.application_uri, security.certificate)
        checked = await verify_server(endpoint, security, timeout_s)
        await client.set_security(
            POLICY_CLASSES[security.policy],
            certificate=str(security.certificate),
            private_key=str(security.private_key),
            # The certificate just checked (pinned or issued by a trusted CA), not whatever a later call returns.
            server_certificate=checked,
            mode=MODES[security.mode],
        )
    if security.username is not None and security.password is not None:
        if security.policy == "None":
            log.warning(
                "opcua %s: username login over security mode None; the password is protected only if the server's "
                "user token policy encrypts it (configure a security policy)",
                endpoint,
            )
        client.set_user(security.username)
        client.set_password(security.password.get_secret_value())
