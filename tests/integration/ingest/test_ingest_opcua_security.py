"""Secure OPC UA: certificates generated here; signed/encrypted sessions work, untrusted/expired are refused."""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ingest.exceptions import OpcUaSecurityError
from ingest.opcua.collector import OpcUaCollector
from ingest.opcua.security import make_client_certificate
from ingest.simulator.fleet import Fleet
from ingest.simulator.server import NAMESPACE_URI, ServerSecurity, SimulatorServer
from vigil.config import OpcUaSecurity, OpcUaSource, VigilConfig
from vigil.contracts import Reading

pytestmark = pytest.mark.integration

START = datetime(2026, 6, 1, tzinfo=UTC)


def make_ca(directory: Path, name: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A CA certificate (written as <name>.der) and its key, for trust_dir tests."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / f"{name}.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return cert, key


def make_cert(
    directory: Path,
    name: str,
    uri: str,
    *,
    server: bool,
    valid_from: datetime | None = None,
    days: float = 30,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
) -> tuple[Path, Path]:
    """An application certificate (DER) and its key (PEM), as OPC UA applications use them: self-signed, or
    issued by ``issuer`` (a CA certificate and its key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = valid_from or datetime.now(UTC) - timedelta(hours=1)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(uri),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
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
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(issuer[1] if issuer else key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.der", directory / f"{name}.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("pki")
    server_uri = f"{NAMESPACE_URI}:server"
    out = {
        "server": make_cert(d, "server", server_uri, server=True),
        "other": make_cert(d, "other-server", server_uri, server=True),
        "expired": make_cert(d, "expired-server", server_uri, server=True, valid_from=datetime(2024, 1, 1, tzinfo=UTC)),
        # As `vigil opcua cert` makes it: the configured application URI in the subjectAltName.
        "client": (d / "client.der", d / "client.key.pem"),
        "client-wrong-uri": make_cert(d, "client-wrong-uri", "urn:freeopcua:client", server=False),
    }
    make_client_certificate(*out["client"], application_uri=OpcUaSecurity().application_uri)
    return out


def _source(
    port: int, certs: dict[str, tuple[Path, Path]], pinned: str, client: str = "client", **security: Any
) -> OpcUaSource:
    return OpcUaSource.model_validate(
        {
            "name": "secure",
            "endpoint": f"opc.tcp://127.0.0.1:{port}/vigil/",
            "publishing_interval_ms": 100,
            "sampling_interval_ms": 0,
            "reconnect_initial_s": 0.2,
            "reconnect_max_s": 1.0,
            "timeout_s": 5,
            "nodes": [{"machine": "PMP-001", "sensor": "flow", "node_id": "ns=2;s=PMP-001.flow"}],
            "security": {
                "certificate": str(certs[client][0]),
                "private_key": str(certs[client][1]),
                "server_certificate": str(certs[pinned][0]),
                **security,
            },
        }
    )


async def _collect(
    config: VigilConfig, source: OpcUaSource, port: int, security: ServerSecurity, wanted: int = 5
) -> list[Reading]:
    fleet = Fleet(config, seed=1, start=START, sample_interval_s=10, machines=["PMP-001"])
    out: list[Reading] = []
    async with SimulatorServer(fleet, port, speed=200.0, security=security) as server:
        serving = asyncio.create_task(server.run())
        try:
            async with OpcUaCollector(source, config) as collector:
                async for event in collector:
                    if isinstance(event, Reading):
                        out.append(event)
                    if len(out) >= wanted:
                        break
        finally:
            serving.cancel()
    return out


@pytest.mark.parametrize(
    ("policy", "mode"),
    [
        ("Basic256Sha256", "SignAndEncrypt"),
        ("Aes256_Sha256_RsaPss", "Sign"),
        ("Aes128_Sha256_RsaOaep", "SignAndEncrypt"),
    ],
)
def test_secure_session_with_pinned_certificate_and_user(
    example_config: VigilConfig, certs: dict[str, tuple[Path, Path]], free_port: int, policy: str, mode: str
) -> None:
    security = ServerSecurity(certs["server"][0], certs["server"][1], ((policy, mode),), users={"planner": "s3cret"})
    source = _source(free_port, certs, "server", policy=policy, mode=mode, username="planner", password="s3cret")
    readings = asyncio.run(asyncio.wait_for(_collect(example_config, source, free_port, security), 60))
    assert len(readings) >= 5
    assert {(r.machine_id, r.sensor) for r in readings} == {("PMP-001", "flow")}


def _refused(config: VigilConfig, source: OpcUaSource, port: int, security: ServerSecurity) -> str:
    with pytest.raises(OpcUaSecurityError) as info:
        asyncio.run(asyncio.wait_for(_collect(config, source, port, security), 60))
    return str(info.value)


def test_untrusted_server_certificate_is_refused(
    example_config: VigilConfig, certs: dict[str, tuple[Path, Path]], free_port: int
) -> None:
    security = ServerSecurity(certs["other"][0], certs["other"][1])
    source = _source(free_port, certs, "server", policy="Basic256Sha256", mode="SignAndEncrypt")
    assert "untrusted server certificate" in _refused(example_config, source, free_port, security)


def test_expired_server_certificate_is_refused(
    example_config: VigilConfig, certs: dict[str, tuple[Path, Path]], free_port: int
) -> None:
    security = ServerSecurity(certs["expired"][0], certs["expired"][1])
    source = _source(free_port, certs, "expired", policy="Basic256Sha256", mode="SignAndEncrypt")
    message = _refused(example_config, source, free_port, security)
    assert "expired" in message and "server certificate" in message


def test_never_falls_back_to_no_security(
    example_config: VigilConfig, certs: dict[str, tuple[Path, Path]], free_port: int
) -> None:
    # The server offers None and Aes128 only; the client wants Basic256Sha256 and must not settle for less.
    security = ServerSecurity(
        certs["server"][0], certs["server"][1], (("None", "None"), ("Aes128_Sha256_RsaOaep", "Sign"))
    )
    source = _source(free_port, certs, "server", policy="Basic256Sha256", mode="SignAndEncrypt")
    assert "offers no endpoint with policy Basic256Sha256" in _refused(example_config, source, free_port, security)


def test_wrong_password_is_refused(
    example_config: VigilConfig, certs: dict[str, tuple[Path, Path]], free_port: int
) -> None:
    security = ServerSecurity(certs["server"][0], certs["server"][1], users={"planner": "s3cret"})
    source = _source(
        free_port, certs, "server", policy="Basic256Sha256", mode="SignAndEncrypt", username="planner", password="nope"
    )
    message = _refused(example_config, source, free_port, security)
    assert "refused the session" in message and "nope" not in message


def test_client_certificate_without_the_application_uri_is_refused_naming_both(
    example_config: VigilConfig, certs: dict[str, tuple[Path, Path]], free_port: int
) -> None:
    security = ServerSecurity(certs["server"][0], certs["server"][1])
    source = _source(
        free_port, certs, "server", client="client-wrong-uri", policy="Basic256Sha256", mode="SignAndEncrypt"
    )
    message = _refused(example_config, source, free_port, security)
    assert "urn:freeopcua:client" in message and "urn:vigil:collector" in message and "vigil opcua cert" in message


def test_trust_dir_accepts_a_ca_issued_server_and_refuses_a_revoked_or_foreign_one(
    example_config: VigilConfig, certs: dict[str, tuple[Path, Path]], tmp_path: Path, free_port: int
) -> None:
    trust, elsewhere = tmp_path / "trusted", tmp_path / "elsewhere"
    trust.mkdir()
    elsewhere.mkdir()
    ca = make_ca(trust, "plant-ca")
    server_uri = f"{NAMESPACE_URI}:server"
    good = make_cert(elsewhere, "ca-server", server_uri, server=True, issuer=ca)
    revoked = make_cert(elsewhere, "revoked-server", server_uri, server=True, issuer=ca)
    foreign = make_cert(elsewhere, "foreign-server", server_uri, server=True, issuer=make_ca(elsewhere, "other-ca"))
    now = datetime.now(UTC)
    revoked_serial = x509.load_der_x509_certificate(revoked[0].read_bytes()).serial_number
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca[0].subject)
        .last_update(now - timedelta(hours=1))
        .next_update(now + timedelta(days=1))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(revoked_serial)
            .revocation_date(now - timedelta(minutes=5))
            .build()
        )
        .sign(ca[1], hashes.SHA256())
    )
    (trust / "plant-ca.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))

    def source() -> OpcUaSource:
        base = _source(
            free_port, certs, "server", policy="Basic256Sha256", mode="SignAndEncrypt", username="u", password="p"
        )
        security = base.security.model_copy(update={"server_certificate": None, "trust_dir": trust})
        return base.model_copy(update={"security": security})

    readings = asyncio.run(
        asyncio.wait_for(
            _collect(example_config, source(), free_port, ServerSecurity(good[0], good[1], users={"u": "p"})), 60
        )
    )
    assert len(readings) >= 5
    message = _refused(example_config, source(), free_port, ServerSecurity(revoked[0], revoked[1]))
    assert "revoked server certificate" in message and "revoked-server" in message
    message = _refused(example_config, source(), free_port, ServerSecurity(foreign[0], foreign[1]))
    assert "not issued by any certificate in trust_dir" in message and "foreign-server" in message
