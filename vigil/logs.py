"""Logging for every Vigil service: plain text for people, JSON lines for log shippers, and never a secret.

``setup_logging("INFO", json=True)`` writes one JSON object per line to stderr::

    {"ts": "2026-11-26T12:00:00.123Z", "level": "INFO", "logger": "alerts.service", "message": "alert opened",
     "machine_id": "PMP-003", "alert_id": "a-17"}

Fields passed with ``extra=`` (``machine_id``, ``alert_id``, ``topic``, ...) become keys of the object (in text
mode they follow the message as ``key=value``). Before any handler formats a record, a redaction filter scrubs:

- pydantic ``SecretStr`` values (anywhere in the arguments or extras) and every secret value registered with
  :func:`protect_secrets` (the service passes its configuration; each ``SecretStr`` in it is collected), wherever
  the plain value appears in the text, including exception tracebacks;
- values of keys that name a secret (``password``, ``token``, ``secret``, ``api_key``, ``authorization``, ...);
- ``Authorization:`` headers, ``token=``/``password=`` pairs, and credentials in URLs
  (``http://user:pass@host`` -> ``http://user:***@host``).

The CLI sets it up from ``--log-json`` / ``--log-level`` or ``VIGIL_LOG_JSON=1`` / ``VIGIL_LOG_LEVEL``.
"""

from __future__ import annotations

import json as _json
import logging
import re
import sys
import traceback
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from pydantic import BaseModel, SecretBytes, SecretStr

REDACTED = "[REDACTED]"

# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD = frozenset(
    set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
    | {"message", "asctime", "taskName", "stack_info", "exc_text", "exc_info"}
)
_SENSITIVE_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|authorization|credential|private[_-]?key|cookie)", re.IGNORECASE
)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]+)@")
_AUTH_HEADER = re.compile(r"(?P<key>\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\"'\r\n,}]+)", re.I)
_KEY_VALUE = re.compile(
    r"(?P<key>\b[\w.-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key)[\"']?\s*[=:]\s*[\"']?)(?P<value>[^\s\"'&,;}]+)",
    re.IGNORECASE,
)


# Cheap pre-check: the rewrites below only run on text that mentions one of these.
_HINT = re.compile(r"://|authorization|pass|secret|token|api[_-]?key", re.IGNORECASE)


class RedactionFilter(logging.Filter):
    """Scrubs secrets from a record's message, arguments, extras and traceback (install it on handlers).

    >>> f = RedactionFilter(secrets=["hunter2"])
    >>> f.redact("connect http://vigil:hunter2@db:8086?token=abc and pw hunter2")
    'connect http://vigil:***@db:8086?token=[REDACTED] and pw [REDACTED]'
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._ordered: list[str] = []
        self.add_secrets(secrets)

    def add_secrets(self, values: Iterable[str]) -> None:
        # Very short values would turn ordinary words into "[REDACTED]" without protecting anything real.
        self._secrets.update(v for v in values if isinstance(v, str) and len(v) >= 4)
        # Longest first, so a secret that contains another is replaced whole.
        self._ordered = sorted(self._secrets, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if not _HINT.search(text):  # the common case: nothing that looks like a credential, skip the rewrites
            return text
        text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
        text = _AUTH_HEADER.sub(lambda m: f"{m['key']}{REDACTED}", text)
        return _KEY_VALUE.sub(lambda m: f"{m['key']}{REDACTED}", text)

    def redact_value(self, value: Any, key: str = "") -> Any:
        if key and _SENSITIVE_KEY.search(key) and value is not None:
            return REDACTED
        if isinstance(value, SecretStr | SecretBytes):
            return str(value)  # pydantic's own mask: "**********"
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {k: self.redact_value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple | set):
            return [self.redact_value(v) for v in value]
        if isinstance(value, BaseModel):
            return self.redact_value(value.model_dump(mode="json"))
        if isinstance(value, int | float | bool) or value is None:
            return value
        # Arbitrary objects are rendered by their str() later; redact that rendering now.
        return self.redact(str(value))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = f"{record.msg} {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        for key in [k for k in vars(record) if k not in _STANDARD]:
            setattr(record, key, self.redact_value(getattr(record, key), key))
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC, ms), ``level``, ``logger``, ``message``, extras, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        obj: dict[str, Any] = {
            "ts": ts,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            obj.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            obj["exc"] = record.exc_text
        if record.stack_info:
            obj["stack"] = record.stack_info
        return _json.dumps(obj, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger: message key=value ...`` (extras appended so ids are visible in text mode too)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if not extras:
            return line
        head, sep, tail = line.partition("\n")
        pairs = " ".join(f"{k}={v}" for k, v in extras.items())
        return f"{head} {pairs}{sep}{tail}"


_HANDLER_NAME = "vigil"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted: test runners and daemonisers swap it, and a
    handler holding the old object would write into a closed stream."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # Handler.handle holds the handler's lock around emit
        super().emit(record)


def setup_logging(
    level: str | int = "INFO",
    json: bool = False,
    *,
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
    quiet: Mapping[str, str | int] | None = None,
) -> logging.Handler:
    """Configure the root logger once (calling again replaces Vigil's handler); returns the handler.

    ``quiet`` raises chatty libraries' levels; by default kafka-python keeps only warnings and errors.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    # On the handler, not a logger: logger filters do not see records propagated from child loggers.
    handler.addFilter(RedactionFilter(secrets))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # kafka-python narrates every connection at INFO; keep its warnings and errors only.
    for name, lib_level in (quiet if quiet is not None else {"kafka": logging.WARNING}).items():
        logging.getLogger(name).setLevel(lib_level)
    return handler


def _secret_values(obj: Any, seen: set[int] | None = None) -> list[str]:
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, SecretStr):
        return [obj.get_secret_value()]
    if isinstance(obj, SecretBytes):
        return [obj.get_secret_value().decode(errors="replace")]
    if isinstance(obj, BaseModel):
        return [v for name in type(obj).model_fields for v in _secret_values(getattr(obj, name), seen)]
    if isinstance(obj, Mapping):
        return [v for item in obj.values() for v in _secret_values(item, seen)]
    if isinstance(obj, list | tuple | set | frozenset):
        return [v for item in obj for v in _secret_values(item, seen)]
    return []


def secrets_from_environ(environ: Mapping[str, str]) -> list[str]:
    """Values of ``VIGIL_...`` variables whose name says they are secret (``VIGIL_INFLUX__TOKEN``, ``..._PASSWORD``).

    For entry points: containers get their credentials this way, so the CLI registers them before anything logs.

    >>> secrets_from_environ({"VIGIL_INFLUX__TOKEN": "t0ken-value", "VIGIL_INFLUX__URL": "http://db", "HOME": "/root"})
    ['t0ken-value']
    """
    return [v for k, v in environ.items() if k.startswith("VIGIL_") and _SENSITIVE_KEY.search(k) and v]


def protect_secrets(*objects: Any) -> int:
    """Register every ``SecretStr`` value found in ``objects`` (e.g. the loaded configuration) for redaction.

    Returns how many values were registered. A service calls it right after loading its configuration, so a
    password that leaks into an exception message from a library is still masked.
    """
    values = [v for obj in objects for v in (_secret_values(obj) if not isinstance(obj, str) else [obj])]
    for handler in logging.getLogger().handlers:
        for flt in handler.filters:
            if isinstance(flt, RedactionFilter):
                flt.add_secrets(values)
    return len(values)
