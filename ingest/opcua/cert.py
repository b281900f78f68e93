"""``vigil opcua cert``: a client certificate and key for a secured OPC UA source, with its application URI.

OPC UA servers check that the client certificate's subjectAltName carries the ApplicationUri the client
announces (else ``BadCertificateUriInvalid``). The collector announces ``security.application_uri`` (default
``urn:vigil:collector``); this command writes a self-signed certificate (DER) with that URI and the host name,
and its private key (PEM, mode 0600), to the paths the source configures (or the ones given). The server's
administrator then trusts the certificate (copies it into the server's trusted folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ingest.opcua.security import fingerprint, make_client_certificate
from vigil.config import OpcUaSecurity
from vigil.exceptions import VigilError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil opcua cert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="plant configuration: paths and application URI from a [[sources.opcua]]")
    parser.add_argument("--source", help="the [[sources.opcua]] name (default: the first with a certificate)")
    parser.add_argument("--cert", type=Path, help="certificate file to write (DER); default: the source's")
    parser.add_argument("--key", type=Path, help="private key file to write (PEM); default: the source's")
    parser.add_argument("--application-uri", help="default: the source's security.application_uri")
    parser.add_argument("--hostname", help="DNS name in the certificate (default: this host's name)")
    parser.add_argument("--days", type=int, default=730, help="validity in days (default 730)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def _security(config_path: str | None, name: str | None) -> OpcUaSecurity:
    if config_path is None and name is None:
        return OpcUaSecurity()
    from vigil.config import load_config

    sources = load_config(config_path).sources.opcua
    if name is not None:
        chosen = [s for s in sources if s.name == name]
        if not chosen:
            raise VigilError(f"no [[sources.opcua]] named {name!r} (configured: {', '.join(s.name for s in sources)})")
    else:
        chosen = [s for s in sources if s.security.certificate is not None] or sources
    return chosen[0].security if chosen else OpcUaSecurity()


def cert_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        security = _security(args.config, args.source)
    except VigilError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return 2
    cert_path = args.cert or security.certificate or Path("vigil-client.der")
    key_path = args.key or security.private_key or Path("vigil-client.key.pem")
    uri = args.application_uri or security.application_uri
    existing = [str(p) for p in (cert_path, key_path) if p.exists()]
    if existing and not args.force:
        print(f"{', '.join(existing)} exists; use --force to replace it", file=sys.stderr)  # noqa: T201
        return 2
    cert = make_client_certificate(cert_path, key_path, uri, hostname=args.hostname, days=args.days)
    print(  # noqa: T201
        f"certificate {cert_path} (sha256 {fingerprint(cert)}, application URI {uri}, valid until "
        f"{cert.not_valid_after_utc.date().isoformat()})\nprivate key {key_path} (mode 0600)\n"
        f"configure: [sources.opcua.security] certificate = {str(cert_path)!r}, private_key = {str(key_path)!r}"
        + ("" if uri == OpcUaSecurity().application_uri else f", application_uri = {uri!r}")
        + "\nthen have the server trust the certificate (its trusted folder)."
    )
    return 0


def main(argv: list[str]) -> int:
    """``vigil opcua <tool>``: ``cert``."""
    if not argv or argv[0] != "cert":
        out = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        print("usage: vigil opcua cert [options]   (a client certificate and key; --help)", file=out)
        return 0 if out is sys.stdout else 2
    return cert_main(argv[1:])
