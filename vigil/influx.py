"""InfluxDB results store: one schema for everything Vigil writes, line protocol, and a buffered sink.

Every stage may write to InfluxDB, so this lives in the kernel and imports no stage. The schema (documented in
``docs/influx-schema.md``) puts identity in tags (machine, type, site, line, model, and what makes a point
unique inside its measurement) and values in fields, and stamps every point with its *source* timestamp in
nanoseconds: replaying a topic writes the same series key and time again, which InfluxDB treats as an
overwrite, so a replay never duplicates.

The sink follows the Quix Streams contract: :meth:`InfluxSink.add` buffers, :meth:`InfluxSink.flush` writes
and raises :class:`InfluxWriteError` when the server did not acknowledge everything (the caller must then not
commit its Kafka offsets), :meth:`InfluxSink.setup` connects and checks. A line the server refuses (HTTP 400/422,
e.g. a field type conflict) is isolated by bisecting the batch (writes are idempotent, so rewriting accepted
lines is harmless) and handed to ``on_rejected`` with the server's reason, normally the dead-letter topic.

>>> from datetime import datetime, timezone
>>> p = Point("predictions", {"machine": "PMP 1", "site": "north"}, {"p_failure": 0.7, "decision": "alert"},
...           ts_ns(datetime(2026, 1, 1, tzinfo=timezone.utc)))
>>> p.line()
'predictions,machine=PMP\\\\ 1,site=north p_failure=0.7,decision="alert" 1767225600000000000'
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from vigil.config.connections import InfluxSettings, Topics
from vigil.config.security import certificate_refusal
from vigil.contracts import (
    Alert,
    DriftEvent,
    FeatureVector,
    MaintenanceEvent,
    Prediction,
    Reading,
    ReadingBatch,
    ReadingColumns,
)
from vigil.exceptions import VigilError

log = logging.getLogger(__name__)

FieldValue = float | int | bool | str

# Measurement names: one place, quoted by docs/influx-schema.md.
FEATURES = "features"
PREDICTIONS = "predictions"
CONTRIBUTIONS = "contributions"
DRIFT = "drift"
ALERTS = "alerts"
MAINTENANCE = "maintenance"
MODEL_METRICS = "model_metrics"
READINGS = "readings"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InfluxError(VigilError):
    """InfluxDB is unreachable, refuses our credentials, or lacks the configured database/bucket."""


class InfluxUnavailable(InfluxError):
    """InfluxDB does not answer (refused connection, timeout, 5xx): an outage to wait out, not a mistake to fix."""


class InfluxWriteError(InfluxError):
    """A flush did not complete; the unwritten lines stay buffered and Kafka offsets must not be committed."""


def ts_ns(value: datetime) -> int:
    """Exact integer nanoseconds since the epoch (no float rounding, so replays hit the same timestamp).

    >>> ts_ns(datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC))
    1767225600123456000
    """
    return (value - _EPOCH) // timedelta(microseconds=1) * 1000


def from_ns(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value // 1000)


# ------------------------------------------------------------------------------------------------ line protocol


def escape_measurement(name: str) -> str:
    """Commas and spaces are escaped in measurement names (``=`` is legal there).

    >>> escape_measurement("a b,c=d")
    'a\\\\ b\\\\,c=d'
    """
    return _clean(name).replace(",", r"\,").replace(" ", r"\ ")


def escape_key(name: str) -> str:
    """Tag keys, tag values and field keys: commas, equals signs and spaces are escaped.

    Backslashes are kept literally (InfluxDB does not unescape them in keys); newlines cannot be represented
    and become spaces.

    >>> escape_key("a b,c=d")
    'a\\\\ b\\\\,c\\\\=d'
    """
    return _clean(name).replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def escape_string_field(value: str) -> str:
    """A string field value, quoted; backslashes and double quotes are escaped, newlines are legal inside.

    >>> escape_string_field('say "hi" \\\\ bye')
    '"say \\\\"hi\\\\" \\\\\\\\ bye"'
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _clean(text: str) -> str:
    cleaned = text.replace("\r", " ").replace("\n", " ")
    # A trailing backslash would escape the separator that follows it.
    return cleaned[:-1] + "_" if cleaned.endswith("\\") else cleaned


def format_field(value: FieldValue) -> str | None:
    """Line-protocol literal for a field value; ``None`` for values InfluxDB cannot store (NaN, infinity).

    Floats are always written as floats (``3.0``), integers with ``i``, so a field keeps one type forever.

    >>> format_field(3.0), format_field(3), format_field(True), format_field(float("nan"))
    ('3.0', '3i', 'true', None)
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return escape_string_field(value)


@dataclass(frozen=True)
class Point:
    """One InfluxDB point. Empty tag values and unstorable field values are left out."""

    measurement: str
    tags: Mapping[str, str | None]
    fields: Mapping[str, FieldValue | None]
    ts_ns: int

    def line(self) -> str | None:
        """The point in line protocol, or ``None`` when no field is storable (such a point cannot exist)."""
        tags = "".join(
            f",{escape_key(k)}={escape_key(v)}" for k, v in sorted(self.tags.items()) if v is not None and v != ""
        )
        fields = []
        for key, value in self.fields.items():
            if value is None:
                continue
            literal = format_field(value)
            if literal is not None:
                fields.append(f"{escape_key(key)}={literal}")
        if not fields:
            return None
        return f"{escape_measurement(self.measurement)}{tags} {','.join(fields)} {self.ts_ns}"


# ------------------------------------------------------------------------------------------------ schema


@dataclass(frozen=True)
class MachineTags:
    """What the schema tags every machine's points with, besides its id."""

    type: str | None = None
    site: str | None = None
    line: str | None = None


class Schema:
    """Maps each message contract to points. ``machines`` fills type/site/line for messages that lack them.

    >>> from datetime import datetime, timezone
    >>> schema = Schema({"PMP-001": MachineTags("pump", "north", "north-1")})
    >>> event = MaintenanceEvent(event_id="e1", machine_id="PMP-001", ts=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...                          event="failure", failure_mode="bearing")
    >>> schema.points(event)[0].line()
    'maintenance,event=failure,line=north-1,machine=PMP-001,site=north,type=pump event_id="e1",failure_mode="bearing",text="",event_kind="failure" 1767225600000000000'
    """

    def __init__(self, machines: Mapping[str, MachineTags] | None = None) -> None:
        self.machines = dict(machines or {})

    def _tags(
        self, machine_id: str | None, machine_type: str | None = None, **given: str | None
    ) -> dict[str, str | None]:
        known = self.machines.get(machine_id or "", MachineTags())
        tags: dict[str, str | None] = {
            "machine": machine_id,
            "type": machine_type or known.type,
            "site": given.pop("site", None) or known.site,
            "line": given.pop("line", None) or known.line,
        }
        tags.update(given)
        return tags

    def points(self, message: object) -> list[Point]:
        """Every point for one message of any supported contract (unknown kinds give none)."""
        if isinstance(message, FeatureVector):
            return [self.features(message)]
        if isinstance(message, Prediction):
            return self.prediction(message)
        if isinstance(message, DriftEvent):
            return [self.drift(message)]
        if isinstance(message, Alert):
            return [self.alert(message)]
        if isinstance(message, MaintenanceEvent):
            return [self.maintenance(message)]
        if isinstance(message, Reading):
            return [self.reading(message)]
        if isinstance(message, ReadingBatch | ReadingColumns):  # rows, JSON columns or packed columns alike
            return [self.reading(r) for r in message.readings()]
        return []

    def features(self, fv: FeatureVector) -> Point:
        fields: dict[str, FieldValue | None] = dict(fv.features)
        fields.update(
            {
                "count": fv.count,
                "bad_quality_share": float(fv.bad_quality_share),
                "gap": fv.gap,
                "state": fv.state.value,
                # The running sensor's held value when it decided the state (report by exception), else absent.
                "state_held": fv.state_held,
                "closed_by": fv.closed_by,
                "missing": ",".join(fv.missing),
                "imputed": ",".join(fv.imputed),
                "window_start_ns": ts_ns(fv.window_start),
            }
        )
        tags = self._tags(fv.machine_id, fv.machine_type, site=fv.site, line=fv.line)
        return Point(FEATURES, tags, fields, ts_ns(fv.window_end))

    def prediction(self, p: Prediction) -> list[Point]:
        tags = self._tags(p.machine_id, p.machine_type, site=p.site, line=p.line, model=p.model)
        top = p.contributions[0].feature if p.contributions else None
        fields: dict[str, FieldValue | None] = {
            "p_failure": p.p_failure,
            "anomaly_score": p.anomaly_score,
            "anomaly_threshold": p.anomaly_threshold,
            "threshold": p.threshold,
            "horizon_s": p.horizon_s,
            "model_version": p.model_version,
            "decision": p.decision.value,
            "decided_by": p.decided_by,
            "cold_start": p.cold_start,
            "reasons": "; ".join(p.reasons),
            "rule_violations": "; ".join(p.rule_violations),
            "top_feature": top,
        }
        ts = ts_ns(p.ts)
        points = [Point(PREDICTIONS, tags, fields, ts)]
        for rank, c in enumerate(p.contributions, start=1):
            c_fields: dict[str, FieldValue | None] = {
                "value": c.value,
                "normal": c.normal,
                "normal_std": c.normal_std,
                "contribution": c.contribution,
                "rank": rank,
            }
            points.append(Point(CONTRIBUTIONS, {**tags, "feature": c.feature}, c_fields, ts))
        return points

    def drift(self, d: DriftEvent) -> Point:
        tags = self._tags(d.machine_id, d.machine_type, detector=d.detector, target=d.target, event=d.event)
        fields: dict[str, FieldValue | None] = {"detail": d.detail, "value": d.value, "event_kind": d.event}
        return Point(DRIFT, tags, fields, ts_ns(d.ts))

    def alert(self, a: Alert) -> Point:
        # alert_id and state are tags: "last state per alert" is a GROUP BY, and two different transitions of
        # one episode never share a series key and timestamp (a replayed transition overwrites itself).
        tags = self._tags(
            a.machine_id,
            a.machine_type,
            site=a.site,
            line=a.line,
            kind=a.alert_kind,
            alert_id=a.alert_id,
            state=a.state,
        )
        top = a.contributions[0] if a.contributions else None
        fields: dict[str, FieldValue | None] = {
            "status": a.state.value,
            "severity": a.severity.value,
            "opened_at_ns": ts_ns(a.opened_at),
            "p_failure": a.p_failure,
            "horizon_s": a.horizon_s,
            "summary": a.summary,
            "top_feature": top.feature if top else None,
            "top_value": top.value if top else None,
            "top_normal": top.normal if top else None,
            "actor": a.actor,
            "assignee": a.assignee,
            "note": a.note,
            "seq": a.seq,
        }
        return Point(ALERTS, tags, fields, ts_ns(a.ts))

    def maintenance(self, m: MaintenanceEvent) -> Point:
        tags = self._tags(m.machine_id, None, event=m.event.value)
        fields: dict[str, FieldValue | None] = {
            "event_id": m.event_id,
            "failure_mode": m.failure_mode,
            "text": m.text,
            "event_kind": m.event.value,
        }
        return Point(MAINTENANCE, tags, fields, ts_ns(m.ts))

    def reading(self, r: Reading) -> Point:
        tags = self._tags(r.machine_id, None, sensor=r.sensor)
        fields: dict[str, FieldValue | None] = {
            "value": r.value,
            "quality": r.quality.value,
            "status_code": r.status_code,
            "flags": ",".join(r.flags),
            "unit": r.unit,
        }
        return Point(READINGS, tags, fields, ts_ns(r.ts))

    def metric(
        self,
        metric: str,
        value: float,
        ts: datetime,
        *,
        model: str | None = None,
        machine_type: str | None = None,
        machine_id: str | None = None,
        site: str | None = None,
        line: str | None = None,
        n: int | None = None,
    ) -> Point:
        """A model-quality metric (prequential accuracy, recall, ...) for a segment: type/site/line/machine."""
        tags = self._tags(machine_id, machine_type, site=site, line=line, model=model, metric=metric)
        return Point(MODEL_METRICS, tags, {"value": float(value), "n": n}, ts_ns(ts))


# ------------------------------------------------------------------------------------------------ transports


class _Rejected(Exception):
    """The server refused (part of) the body for its content; bisect to find the culprit lines."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Transient(Exception):
    """Worth retrying: connection refused/reset, timeout, 5xx, 429."""


class Transport(Protocol):
    def ping(self) -> None: ...

    def check(self) -> None: ...

    def write(self, lines: Sequence[str]) -> None: ...

    def query(self, q: str) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def _classify_status(status: int, body: str) -> Exception:
    reason = _error_text(body) or f"HTTP {status}"
    if status in (400, 422):
        return _Rejected(reason)
    if status == 413:
        return _Rejected("request too large")
    if status == 429 or status >= 500:
        return _Transient(f"HTTP {status}: {reason}")
    return InfluxWriteError(f"InfluxDB refused the write (HTTP {status}): {reason}")


def _error_text(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:500]
    if isinstance(data, dict):
        return str(data.get("error") or data.get("message") or body)[:500]
    return body.strip()[:500]


class V1Transport:
    """The v1 HTTP API: ``/write`` (line protocol) and ``/query`` (InfluxQL).

    Works against InfluxDB 1.x and the v1 compatibility endpoints of 2.x/3.x (with ``token`` set, the token is
    sent as ``Authorization: Token``; otherwise ``username``/``password`` as basic auth).
    """

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings

    def _headers(self) -> dict[str, str]:
        s = self.settings
        if s.token is not None:
            return {"Authorization": f"Token {s.token.get_secret_value()}"}
        if s.username:
            password = s.password.get_secret_value() if s.password else ""
            raw = base64.b64encode(f"{s.username}:{password}".encode()).decode()
            return {"Authorization": f"Basic {raw}"}
        return {}

    def _request(self, path: str, params: dict[str, str], body: bytes | None, headers: dict[str, str]) -> bytes:
        url = f"{self.settings.url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, data=body, headers={**self._headers(), **headers}, method="POST")
        try:
            with _urlopen(self.settings, request) as resp:
                data: bytes = resp.read()
                return data
        except urllib.error.HTTPError as exc:
            raise _classify_status(exc.code, exc.read().decode(errors="replace")) from exc
        except (urllib.error.URLError, OSError) as exc:
            _raise_if_certificate(exc)
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc

    def ping(self) -> None:
        url = f"{self.settings.url.rstrip('/')}/ping"
        try:
            with _urlopen(self.settings, urllib.request.Request(url, headers=self._headers())) as resp:
                resp.read()
        except (urllib.error.URLError, OSError) as exc:
            _raise_if_certificate(exc)
            raise InfluxUnavailable(
                f"influx.url: InfluxDB at {self.settings.url} does not answer /ping ({exc})"
            ) from exc

    def check(self) -> None:
        try:
            rows = self.query("SHOW DATABASES")
        except _Transient as exc:
            raise InfluxUnavailable(f"influx.url: cannot list databases at {self.settings.url}: {exc}") from exc
        except _Rejected as exc:
            raise InfluxError(f"influx.url: cannot list databases at {self.settings.url}: {exc}") from exc
        names = {str(r.get("name")) for r in rows}
        if self.settings.database not in names:
            raise InfluxError(f"influx.database: database {self.settings.database!r} does not exist")

    def write(self, lines: Sequence[str]) -> None:
        body = "\n".join(lines).encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.settings.gzip:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        params = {"db": self.settings.database, "precision": "ns"}
        if self.settings.retention_policy:
            params["rp"] = self.settings.retention_policy
        self._request("/write", params, body, headers)

    def query(self, q: str) -> list[dict[str, Any]]:
        params = {"db": self.settings.database, "q": q, "epoch": "ns"}
        raw = self._request("/query", params, b"", {"Content-Type": "application/x-www-form-urlencoded"})
        return parse_influxql(json.loads(raw))

    def close(self) -> None:
        return None


def _urlopen(settings: InfluxSettings, request: urllib.request.Request) -> Any:
    """``urlopen`` with the configured TLS context for an https url (a private CA, a client certificate)."""
    return urllib.request.urlopen(request, timeout=settings.timeout_s, context=settings.ssl_context())


def _raise_if_certificate(exc: BaseException) -> None:
    """The server's certificate was refused: configuration (naming ``influx.tls.*``), not a retriable outage."""
    message = certificate_refusal("influx", exc)
    if message is not None:
        raise InfluxError(message) from exc


def _client_tls(settings: InfluxSettings) -> dict[str, Any]:
    """influxdb-client's TLS argument: the same context as the v1 path, for an https url."""
    return {"ssl_context": settings.ssl_context()} if settings.https else {}


def parse_influxql(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flatten an InfluxQL JSON answer into rows: columns, the series' tags and ``_measurement``.

    >>> parse_influxql({"results": [{"series": [{"name": "m", "tags": {"machine": "A"},
    ...     "columns": ["time", "x"], "values": [[1, 2.5]]}]}]})
    [{'_measurement': 'm', 'machine': 'A', 'time': 1, 'x': 2.5}]
    """
    rows: list[dict[str, Any]] = []
    for statement in result.get("results", []):
        if "error" in statement:
            raise InfluxError(f"query failed: {statement['error']}")
        for series in statement.get("series", []):
            for values in series.get("values", []):
                row: dict[str, Any] = {"_measurement": series.get("name"), **series.get("tags", {})}
                row.update(zip(series["columns"], values, strict=False))
                rows.append(row)
    return rows


class V2Transport:
    """The v2 API through ``influxdb-client`` (token, org, bucket); InfluxQL queries use the v1-compat path."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._write_api: Any = None

    def _connect(self) -> Any:
        if self._client is None:
            from influxdb_client.client.influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS

            s = self.settings
            token = s.token.get_secret_value() if s.token else ""
            self._client = InfluxDBClient(
                url=s.url,
                token=token,
                org=s.org or "",
                timeout=int(s.timeout_s * 1000),
                enable_gzip=s.gzip,
                **_client_tls(s),
            )
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        return self._client

    def ping(self) -> None:
        if not self._connect().ping():
            raise InfluxError(f"influx.url: InfluxDB at {self.settings.url} does not answer /ping")

    def check(self) -> None:
        s = self.settings
        if not (s.token and s.org and s.bucket):
            raise InfluxError("influx.token, influx.org and influx.bucket are required with influx.api = 'v2'")
        from influxdb_client.rest import ApiException

        try:
            bucket = self._connect().buckets_api().find_bucket_by_name(s.bucket)
        except ApiException as exc:
            if exc.status != 404:
                raise InfluxError(
                    f"influx.bucket: cannot look up bucket {s.bucket!r}: {exc.status} {exc.reason}"
                ) from exc
            self._check_compat_bucket()
            return
        except Exception as exc:  # influxdb-client raises several unrelated types here
            raise InfluxError(f"influx.bucket: cannot look up bucket {s.bucket!r}: {exc}") from exc
        if bucket is None:
            raise InfluxError(f"influx.bucket: bucket {s.bucket!r} does not exist in org {s.org!r}")

    def _check_compat_bucket(self) -> None:
        """InfluxDB 1.8+ serves the v2 write and Flux endpoints but no buckets API: there a bucket is
        ``database/retention_policy`` and the database must exist (checked through the v1 API)."""
        s = self.settings
        database = (s.bucket or "").split("/", 1)[0]
        try:
            V1Transport(s.model_copy(update={"database": database})).check()
        except InfluxError as exc:
            raise InfluxError(
                f"influx.bucket: {s.url} has no buckets API (InfluxDB 1.8+ compatibility) and {exc}"
            ) from exc
        log.info(
            "InfluxDB at %s is 1.8+ (v2 compatibility API): bucket %r is database/retention policy", s.url, s.bucket
        )

    def write(self, lines: Sequence[str]) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        self._connect()
        try:
            self._write_api.write(
                bucket=self.settings.bucket,
                org=self.settings.org,
                record="\n".join(lines),
                write_precision=WritePrecision.NS,
            )
        except ApiException as exc:
            body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or "")
            raise _classify_status(int(exc.status or 0), body) from exc
        except OSError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            # urllib3's connection errors are not OSErrors; anything else unexpected is treated as transient
            # so the batch is kept and retried rather than lost.
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc

    def query(self, q: str) -> list[dict[str, Any]]:
        return V1Transport(self.settings).query(q)

    def query_flux(self, flux: str) -> list[dict[str, Any]]:
        tables = self._connect().query_api().query(flux, org=self.settings.org)
        return [dict(record.values) for table in tables for record in table.records]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def make_transport(settings: InfluxSettings) -> Transport:
    return V2Transport(settings) if settings.api == "v2" else V1Transport(settings)


# ------------------------------------------------------------------------------------------------ start-up


def ensure_target(
    settings: InfluxSettings,
    *,
    wait_s: float = 0.0,
    stop: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Make sure the configured database (v1) or bucket (v2) is there before a service writes; what it found.

    Every service that writes to InfluxDB calls this once at start-up, and so does ``vigil demo``.

    - v1: an existing database is left alone (a user with only write/read privileges needs nothing more);
      a missing one is created with ``CREATE DATABASE`` (idempotent on 1.x). A configured
      ``influx.retention_policy`` must already exist: Vigil does not pick a duration for you.
    - v2: the bucket must exist in ``influx.org``; buckets are never created silently. InfluxDB 1.8+ serves
      the v2 write/query API but no buckets API (``/api/v2/buckets`` answers a plain 404): there a bucket is
      ``database/retention_policy``, and that database and policy must exist.

    Raises :class:`InfluxError` naming the setting to fix and, where an administrator must act, the statement
    to run. Credentials never appear in a message. A server that does not answer (:class:`InfluxUnavailable`) is
    asked again with backoff for up to ``wait_s`` seconds (``math.inf``: until it answers or ``stop`` is set), so a
    service started during an InfluxDB outage waits for it instead of exiting.
    """
    started = time.monotonic()
    delay = 0.5
    attempts = 0
    while True:
        try:
            if settings.api == "v2":
                found = _ensure_bucket(settings)
            else:
                found = _ensure_database(settings, settings.database, settings.retention_policy)
        except InfluxUnavailable as exc:
            attempts += 1
            if time.monotonic() - started >= wait_s or (stop is not None and stop.is_set()):
                raise
            if attempts == 1 or attempts % 10 == 0:
                log.warning("%s; asking again in %.1fs (attempt %d)", exc, delay, attempts)
            if stop is not None:
                stop.wait(delay)
            else:
                sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        if attempts:
            log.info("InfluxDB at %s answers again after %d failed attempt(s)", settings.url, attempts)
        return found


class _Refused(InfluxError):
    """HTTP 401/403: the credentials are wrong, or lack the privilege for the statement."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status


def _ident(name: str) -> str:
    """An InfluxQL identifier, double-quoted.

    >>> _ident('plant "north"')
    '"plant \\\\"north\\\\""'
    """
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _credentials_keys(settings: InfluxSettings) -> str:
    return "influx.token" if settings.token is not None else "influx.username/influx.password"


def _statement(settings: InfluxSettings, q: str) -> list[dict[str, Any]]:
    """Run one InfluxQL statement that needs no database (SHOW/CREATE) through the v1 API."""
    url = f"{settings.url.rstrip('/')}/query"
    headers = {**V1Transport(settings)._headers(), "Content-Type": "application/x-www-form-urlencoded"}
    data = urllib.parse.urlencode({"q": q}).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with _urlopen(settings, request) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        reason = _error_text(exc.read().decode(errors="replace")) or f"HTTP {exc.code}"
        if exc.code in (401, 403):
            raise _Refused(exc.code, reason) from exc
        kind = InfluxUnavailable if exc.code >= 500 else InfluxError
        raise kind(f"influx.url: {settings.url} answered HTTP {exc.code} to {q!r}: {reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        _raise_if_certificate(exc)
        raise InfluxUnavailable(f"influx.url: InfluxDB at {settings.url} does not answer ({exc})") from exc
    return parse_influxql(json.loads(raw))


def _databases(settings: InfluxSettings) -> set[str]:
    try:
        rows = _statement(settings, "SHOW DATABASES")
    except _Refused as exc:
        raise InfluxError(
            f"{_credentials_keys(settings)}: InfluxDB at {settings.url} refused the credentials ({exc})"
        ) from exc
    return {str(r.get("name")) for r in rows}


def _policies(settings: InfluxSettings, database: str, key: str) -> set[str]:
    try:
        rows = _statement(settings, f"SHOW RETENTION POLICIES ON {_ident(database)}")
    except _Refused as exc:
        raise InfluxError(f"{key}: cannot list the retention policies of database {database!r} ({exc})") from exc
    return {str(r.get("name")) for r in rows}


def _ensure_database(settings: InfluxSettings, database: str, retention_policy: str | None) -> str:
    # SHOW first, CREATE only when missing: a non-admin user may not run CREATE DATABASE even on a database
    # that exists (InfluxDB 1.x answers 403), and such a user is what a production deployment should use.
    if database in _databases(settings):
        found = f"InfluxDB database {database!r} exists at {settings.url}"
    else:
        create = f"CREATE DATABASE {_ident(database)}"
        try:
            _statement(settings, create)
        except _Refused as exc:
            who = settings.username or "the configured user"
            grant = f"GRANT ALL ON {_ident(database)} TO {_ident(settings.username)}" if settings.username else ""
            raise InfluxError(
                f"influx.database: database {database!r} does not exist at {settings.url} (or {who} has no "
                f"privilege on it), and {who} may not create it ({exc}). An administrator should run: {create}"
                + (f"; {grant}" if grant else "")
                + "; or set influx.database to a database this user may write"
            ) from exc
        except InfluxUnavailable:
            raise
        except InfluxError as exc:
            raise InfluxError(
                f"influx.database: database {database!r} does not exist at {settings.url} and could not be "
                f"created: {exc}"
            ) from exc
        found = f"created InfluxDB database {database!r} at {settings.url}"
    if retention_policy:
        if retention_policy not in _policies(settings, database, "influx.retention_policy"):
            raise InfluxError(
                f"influx.retention_policy: retention policy {retention_policy!r} does not exist on database "
                f"{database!r} at {settings.url}; create it (e.g. CREATE RETENTION POLICY {_ident(retention_policy)}"
                f" ON {_ident(database)} DURATION 52w REPLICATION 1) or leave influx.retention_policy unset to "
                "write to the database's default policy"
            )
        found += f", retention policy {retention_policy!r} exists"
    log.info("%s", found)
    return found


def _ensure_bucket(settings: InfluxSettings) -> str:
    s = settings
    if not (s.token and s.org and s.bucket):
        raise InfluxError("influx.token, influx.org and influx.bucket are required with influx.api = 'v2'")
    from influxdb_client.client.influxdb_client import InfluxDBClient
    from influxdb_client.rest import ApiException

    client: Any = InfluxDBClient(
        url=s.url, token=s.token.get_secret_value(), org=s.org, timeout=int(s.timeout_s * 1000), **_client_tls(s)
    )
    try:
        buckets = client.buckets_api().find_buckets(name=s.bucket, org=s.org).buckets or []
    except ApiException as exc:
        body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or "")
        return _bucket_refused(s, int(exc.status or 0), body)
    except Exception as exc:  # urllib3's connection errors are not OSErrors
        raise InfluxUnavailable(f"influx.url: cannot look up bucket {s.bucket!r} at {s.url}: {exc}") from exc
    finally:
        client.close()
    if not any(b.name == s.bucket for b in buckets):
        raise InfluxError(
            f"influx.bucket: bucket {s.bucket!r} does not exist in org {s.org!r} (influx.org) at {s.url}; Vigil does "
            f"not create buckets: create it (influx bucket create --name {s.bucket} --org {s.org}) or set "
            "influx.bucket and influx.org to an existing one"
        )
    found = f"InfluxDB bucket {s.bucket!r} exists in org {s.org!r} at {s.url}"
    log.info("%s", found)
    return found


def _bucket_refused(s: InfluxSettings, status: int, body: str) -> str:
    """The buckets API said no: no such API (InfluxDB 1.8+), no such org, or not allowed."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if status == 404 and not isinstance(answer, dict):
        # InfluxDB 1.8+: '404 page not found' in plain text, the route does not exist. A bucket is
        # 'database/retention_policy' (the policy part optional); check both through the v1 API, create nothing.
        found = _check_compat_target(s)
        log.info("%s", found)
        return found
    reason = str(answer.get("message") or answer.get("msg") or body) if isinstance(answer, dict) else body.strip()
    if status in (401, 403):
        raise InfluxError(f"influx.token: InfluxDB at {s.url} refused the token (HTTP {status}: {reason[:300]})")
    raise InfluxError(
        f"influx.bucket/influx.org: cannot find bucket {s.bucket!r} in org {s.org!r} at {s.url} "
        f"(HTTP {status}: {reason[:300]})"
    )


def _check_compat_target(s: InfluxSettings) -> str:
    database, _, policy = (s.bucket or "").partition("/")
    missing, fix = "", ""
    if database not in _databases(s):
        missing, fix = f"database {database!r} does not exist", f"CREATE DATABASE {_ident(database)}"
    elif policy and policy not in _policies(s, database, "influx.bucket"):
        missing = f"retention policy {policy!r} does not exist on database {database!r}"
        fix = f"CREATE RETENTION POLICY {_ident(policy)} ON {_ident(database)} DURATION 52w REPLICATION 1"
    if missing:
        raise InfluxError(
            f"influx.bucket: bucket {s.bucket!r} is not there: {missing}. {s.url} has no buckets API (InfluxDB "
            f"1.8+, where a bucket is database/retention policy and influx.org is ignored). Vigil does not create "
            f"buckets: an administrator should run {fix}, or set influx.bucket to an existing one"
        )
    return f"InfluxDB at {s.url} is 1.8+ (v2 compatibility API): bucket {s.bucket!r} exists as database/policy"


# ------------------------------------------------------------------------------------------------ sink


@dataclass(frozen=True)
class RejectedLine:
    line: str
    reason: str


@dataclass
class SinkStats:
    written: int = 0
    rejected: int = 0
    retries: int = 0
    failed_flushes: int = 0
    requests: int = 0


@dataclass
class FlushResult:
    written: int = 0
    rejected: list[RejectedLine] = field(default_factory=list)


RejectHandler = Callable[[list[RejectedLine]], None]


class InfluxSink:
    """Buffered, batched, retried writes of points to InfluxDB.

    ``add()`` never does I/O; ``flush()`` writes everything buffered in batches of ``settings.batch_size`` and
    returns only when the server acknowledged it (or rejected single lines, which go to ``on_rejected``);
    otherwise it raises :class:`InfluxWriteError` and keeps the unwritten lines for the next flush. Thread-safe.
    """

    def __init__(
        self,
        settings: InfluxSettings,
        *,
        on_rejected: RejectHandler | None = None,
        transport: Transport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.on_rejected = on_rejected
        self._transport = transport
        self._sleep = sleep
        self._buffer: list[str] = []
        self._unreported: list[RejectedLine] = []
        self._oldest: float | None = None
        self._lock = threading.RLock()
        self.stats = SinkStats()

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = make_transport(self.settings)
        return self._transport

    def setup(self) -> None:
        """Connect and check the database/bucket exists; raises :class:`InfluxError` naming the setting."""
        self.transport.ping()
        self.transport.check()

    def add(self, point: Point | str) -> None:
        line = point if isinstance(point, str) else point.line()
        if line is None:
            return
        with self._lock:
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(line)

    def add_all(self, points: Iterable[Point | str]) -> None:
        for p in points:
            self.add(p)

    def __len__(self) -> int:
        return len(self._buffer)

    def due(self) -> bool:
        """Whether a flush is due: a full batch, or the oldest buffered line waited ``flush_interval_s``."""
        with self._lock:
            if len(self._buffer) >= self.settings.batch_size:
                return True
            return self._oldest is not None and time.monotonic() - self._oldest >= self.settings.flush_interval_s

    def flush(self) -> FlushResult:
        result = FlushResult()
        with self._lock:
            try:
                while self._buffer:
                    chunk = self._buffer[: self.settings.batch_size]
                    rejected = self._write_isolating(chunk)
                    del self._buffer[: len(chunk)]
                    result.written += len(chunk) - len(rejected)
                    result.rejected.extend(rejected)
                    self._unreported.extend(rejected)
                    self.stats.written += len(chunk) - len(rejected)
                    self.stats.rejected += len(rejected)
                self._oldest = None
                self._report_rejected()
            except InfluxWriteError:
                self.stats.failed_flushes += 1
                raise
        return result

    def _report_rejected(self) -> None:
        if not self._unreported:
            return
        if self.on_rejected is None:
            for r in self._unreported:
                log.error("InfluxDB rejected a line and no dead-letter handler is set: %s (%s)", r.reason, r.line[:200])
        else:
            try:
                self.on_rejected(list(self._unreported))
            except Exception as exc:
                raise InfluxWriteError(f"rejected lines could not be dead-lettered: {exc}") from exc
        self._unreported.clear()

    def _write_isolating(self, lines: list[str]) -> list[RejectedLine]:
        try:
            self._write_with_retries(lines)
        except _Rejected as exc:
            if len(lines) == 1:
                log.warning("InfluxDB rejected a line: %s", exc.reason)
                return [RejectedLine(lines[0], exc.reason)]
            mid = len(lines) // 2
            return self._write_isolating(lines[:mid]) + self._write_isolating(lines[mid:])
        return []

    def _write_with_retries(self, lines: list[str]) -> None:
        delay = self.settings.retry_backoff_s
        attempt = 0
        while True:
            self.stats.requests += 1
            try:
                self.transport.write(lines)
                return
            except _Transient as exc:
                if attempt >= self.settings.max_retries:
                    raise InfluxWriteError(
                        f"InfluxDB write failed after {attempt + 1} attempt(s): {exc}; {len(self._buffer)} line(s) kept"
                    ) from exc
                attempt += 1
                self.stats.retries += 1
                log.warning("InfluxDB write failed (%s); retry %d in %.1fs", exc, attempt, delay)
                self._sleep(delay)
                delay = min(delay * 2, 30.0)

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run an InfluxQL query (v1 API, or the v1-compat API of 2.x/3.x) and return flat rows."""
        try:
            return self.transport.query(q)
        except (_Transient, _Rejected) as exc:
            raise InfluxError(f"query failed: {exc}") from exc

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def dead_letter_rejected(producer: Any, topics: Topics, service: str, timeout_s: float = 30.0) -> RejectHandler:
    """A reject handler that sends each rejected line to the dead-letter topic and waits for the acks."""
    from vigil.bus import dead_letter, send_dead_letter

    def handle(rejected: list[RejectedLine]) -> None:
        futures = [
            send_dead_letter(
                producer,
                topics,
                dead_letter(
                    service=service,
                    reason="influx_rejected",
                    error=r.reason,
                    raw=r.line.encode(),
                    key=r.line.split(" ", 1)[0].encode(),
                ),
            )
            for r in rejected
        ]
        producer.flush(timeout=timeout_s)
        for f in futures:
            f.get(timeout=timeout_s)

    return handle
