"""TLS and secrets for the connections to Kafka, InfluxDB and MQTT.

One :class:`TlsSettings` shape for all three (``[kafka.tls]``, ``[influx.tls]``, ``[mqtt.tls]``): a private CA,
a client certificate and key (mutual TLS) with the key's password, hostname verification (on by default) and the
lowest TLS version accepted. Every secret can come from a file as well as from the environment: ``password_file``
next to ``password`` (Docker and Kubernetes mount secrets as files). Files are checked when the configuration is
loaded, so a missing or unreadable one fails at start-up naming its key, never at the first connection.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, SecretStr, model_validator

from vigil.config._base import Section


def _readable(path: Path | None) -> Path | None:
    if path is None:
        return None
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"file not readable by this user: {path}")
    return path


ReadableFile = Annotated[Path | None, AfterValidator(_readable)]
"""A path that must name a readable file when set (checked at load: the key is named, not the first connection)."""


class SecretFiles(Section):
    """A section whose ``<name>_file`` keys load the ``SecretStr`` ``<name>`` from a file (one trailing newline
    dropped). Setting both is refused: which one wins would be a guess."""

    @model_validator(mode="after")
    def _load_secret_files(self) -> Self:
        fields = type(self).model_fields
        for name in fields:
            if not name.endswith("_file") or name.removesuffix("_file") not in fields:
                continue
            target = name.removesuffix("_file")
            path = getattr(self, name)
            if path is None:
                continue
            if getattr(self, target) is not None:
                raise ValueError(f"set {target} or {name}, not both")
            try:
                value = Path(path).read_text().removesuffix("\n").removesuffix("\r")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{name}: cannot read {path} ({type(exc).__name__})") from exc
            if not value:
                raise ValueError(f"{name}: {path} is empty")
            object.__setattr__(self, target, SecretStr(value))  # frozen model: set once, during validation
        return self


class TlsSettings(SecretFiles):
    """How Vigil checks a server and proves itself to it over TLS."""

    ca_file: ReadableFile = None
    """PEM bundle of the CA(s) that sign the server's certificate; unset: the system's trusted CAs."""
    cert_file: ReadableFile = None
    """Client certificate (PEM) for mutual TLS; may also hold the key."""
    key_file: ReadableFile = None
    """The client certificate's private key (PEM), when not in ``cert_file``."""
    key_password: SecretStr | None = None
    key_password_file: ReadableFile = None
    check_hostname: bool = True
    """The server's certificate must name the host Vigil connects to. Turn off only for a broker reached by an
    address its certificate does not list, and say why in the configuration."""
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file is set but cert_file is not (a client key needs its certificate)")
        if self.key_password is not None and self.cert_file is None:
            raise ValueError("key_password is set but cert_file is not")
        if self.cert_file is not None:
            # Loads the chain once now: a key that does not match, a wrong key password or a file that is not
            # PEM is refused at start-up. ssl's messages never quote the password.
            try:
                self.ssl_context()
            except ssl.SSLError as exc:
                raise ValueError(
                    f"cert_file/key_file/key_password: cannot load the client certificate and key ({getattr(exc, 'reason', None) or exc})"
                ) from None
        elif self.ca_file is not None:
            try:
                self.ssl_context()
            except ssl.SSLError as exc:
                raise ValueError(
                    f"ca_file: not a PEM CA bundle: {self.ca_file} ({getattr(exc, 'reason', None) or exc})"
                ) from None
        return self

    @property
    def configured(self) -> bool:
        """Anything set beyond the defaults (then the connection must use TLS)."""
        return self != TlsSettings()

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: the server's certificate verified against ``ca_file`` (or the system CAs), its
        hostname checked unless turned off, the client certificate loaded when set."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if self.min_version == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
        if self.ca_file is not None:
            ctx.load_verify_locations(cafile=str(self.ca_file))
        else:
            ctx.load_default_certs()
        ctx.check_hostname = self.check_hostname
        if self.cert_file is not None:
            password = self.key_password.get_secret_value() if self.key_password else None
            ctx.load_cert_chain(
                str(self.cert_file), str(self.key_file) if self.key_file else None, password=password or _no_password
            )
        return ctx


def _no_password() -> Any:
    # An encrypted key without key_password: fail at once instead of prompting on the terminal (OpenSSL would).
    raise ssl.SSLError("the key is encrypted and key_password is not set")


def certificate_refusal(section: str, exc: BaseException) -> str | None:
    """When ``exc`` (or what caused it) is the server's certificate failing verification: a message naming the
    setting to look at (``<section>.tls.ca_file`` for an untrusted issuer, ``.check_hostname`` for a name
    mismatch); else None. Verification failures are configuration, not weather: retrying does not fix them.

    >>> err = ssl.SSLCertVerificationError(1, "x")
    >>> err.verify_message = "Hostname mismatch, certificate is not valid for '127.0.0.2'."
    >>> certificate_refusal("kafka", err)
    "kafka.tls.check_hostname: the server's certificate does not name the host connected to (Hostname mismatch, certificate is not valid for '127.0.0.2'.); connect by a name the certificate lists"
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = str(getattr(cause, "verify_message", "") or cause)
            if "hostname" in detail.lower() or "ip address mismatch" in detail.lower():
                return (
                    f"{section}.tls.check_hostname: the server's certificate does not name the host connected to "
                    f"({detail}); connect by a name the certificate lists"
                )
            return (
                f"{section}.tls.ca_file: the server's certificate is not trusted ({detail}); "
                f"set {section}.tls.ca_file to the CA that signed it"
            )
        reason = getattr(cause, "reason", None)
        cause = reason if isinstance(reason, BaseException) else (cause.__cause__ or cause.__context__)
    return None
