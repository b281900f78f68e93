"""``vigil opcua cert``: the certificate carries the configured application URI; the key is private."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ingest.exceptions import OpcUaSecurityError
from ingest.opcua.cert import main
from ingest.opcua.security import certificate_uris, check_application_uri, load_certificate

ROOT = Path(__file__).resolve().parents[3]


def test_cert_writes_the_application_uri_and_a_private_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = tomllib.loads((ROOT / "config" / "plant.example.toml").read_text())["sources"]["opcua"][0]["name"]
    cert, key = tmp_path / "pki" / "client.der", tmp_path / "pki" / "client.key.pem"
    args = ["--cert", str(cert), "--key", str(key)]
    config = ["--config", str(ROOT / "config" / "plant.example.toml"), "--source", name]
    assert main(["cert", *config, *args, "--application-uri", "urn:acme:plant-7:vigil", "--hostname", "c7"]) == 0
    written = load_certificate(cert)
    assert certificate_uris(written) == ["urn:acme:plant-7:vigil"]
    check_application_uri(written, "urn:acme:plant-7:vigil", cert)
    with pytest.raises(OpcUaSecurityError, match=r"urn:acme:plant-7:vigil.*not the configured.*urn:vigil:collector"):
        check_application_uri(written, "urn:vigil:collector", cert)
    assert key.stat().st_mode & 0o777 == 0o600
    assert "urn:acme:plant-7:vigil" in capsys.readouterr().out
    # Never overwrites a certificate a server may already trust, unless asked.
    assert main(["cert", *args]) == 2
    assert load_certificate(cert).public_bytes(Encoding.DER) == written.public_bytes(Encoding.DER)
    assert main(["cert", *args, "--force"]) == 0
    assert certificate_uris(load_certificate(cert)) == ["urn:vigil:collector"]  # the default application URI


def test_unknown_source_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "--config", str(ROOT / "config" / "plant.example.toml"), "--source", "nope"]) == 2
    assert "no [[sources.opcua]] named 'nope'" in capsys.readouterr().err
