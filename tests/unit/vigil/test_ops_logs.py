"""Structured logs: one JSON object per line with ids from ``extra=``, and no secret ever reaches the output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from vigil.cli import _logging_options
from vigil.config import InfluxSettings, KafkaSettings, MqttSettings
from vigil.logs import REDACTED, RedactionFilter, protect_secrets, setup_logging

SECRET = "s3cr3t-Pa55w0rd"


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    setup_logging("DEBUG", json=True, stream=stream)
    yield stream, logging.getLogger("vigil.test.ops")
    for handler in [h for h in root.handlers if h not in saved_handlers]:
        root.removeHandler(handler)
    root.setLevel(saved_level)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_standard_keys_and_extras(captured: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = captured
    log.info("alert %s opened for %s", "a-17", "PMP-003", extra={"machine_id": "PMP-003", "alert_id": "a-17"})
    log.warning("lag %d", 42, extra={"partition": 3, "lags": {"0": 1}})
    first, second = _lines(stream)
    assert first["level"] == "INFO" and first["logger"] == "vigil.test.ops"
    assert first["message"] == "alert a-17 opened for PMP-003"
    assert (first["machine_id"], first["alert_id"]) == ("PMP-003", "a-17")
    assert str(first["ts"]).endswith("Z") and "T" in str(first["ts"])
    assert second["partition"] == 3 and second["lags"] == {"0": 1}
    assert len(stream.getvalue().splitlines()) == 2  # exactly one line per record


def test_exceptions_are_one_json_line_too(captured: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = captured
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        log.exception("failed", extra={"machine_id": "MTR-001"})
    [line] = _lines(stream)
    assert "RuntimeError: boom" in str(line["exc"]) and line["machine_id"] == "MTR-001"


def test_a_secret_never_appears(captured: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = captured
    influx = InfluxSettings(
        url="http://db:8086", username="vigil", password=SecretStr(SECRET), token=SecretStr(SECRET + "T")
    )
    assert protect_secrets(influx, KafkaSettings(), MqttSettings()) == 2
    log.info("settings %s", influx)  # pydantic masks SecretStr in repr
    log.info("raw value %s", SECRET)  # registered: masked even as a plain string
    log.info("connecting to http://vigil:%s@db:8086/write?db=x", "other-pass-word")
    log.info("headers %s", {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "Accept": "json"})
    log.info("request", extra={"password": "plain-text-pw", "token": SecretStr("tok-tok-tok"), "machine_id": "PMP-001"})
    log.info("query token=abcdef123&db=vigil api_key: 'k-123456'")
    log.info("nested", extra={"settings": {"influx": {"password": "nested-secret"}, "url": "mqtt://u:p4ss@h:1883"}})
    try:
        raise ConnectionError(f"auth failed for password {SECRET}")
    except ConnectionError:
        log.exception("could not connect")

    out = stream.getvalue()
    for leaked in (SECRET, "other-pass-word", "eyJhbGciOiJIUzI1NiJ9", "plain-text-pw", "tok-tok-tok", "abcdef123"):
        assert leaked not in out, leaked
    for leaked in ("k-123456", "nested-secret", "p4ss"):
        assert leaked not in out, leaked
    lines = _lines(stream)
    assert lines[2]["message"] == "connecting to http://vigil:***@db:8086/write?db=x"
    assert lines[4]["password"] == REDACTED and lines[4]["token"] == REDACTED and lines[4]["machine_id"] == "PMP-001"
    assert "db=vigil" in str(lines[5]["message"])  # only the secret part of the query is masked
    assert REDACTED in str(lines[-1]["exc"])


def test_text_mode_appends_ids_and_redacts() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers)
    try:
        setup_logging("INFO", json=False, stream=stream, secrets=[SECRET])
        logging.getLogger("t").info("sent %s", SECRET, extra={"alert_id": "a-1"})
        logging.getLogger("t").debug("not shown")
    finally:
        for handler in [h for h in root.handlers if h not in saved]:
            root.removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    assert line.endswith(f"INFO t: sent {REDACTED} alert_id=a-1")


def test_setup_twice_keeps_one_handler(captured: tuple[io.StringIO, logging.Logger]) -> None:
    stream, _ = captured
    second = io.StringIO()
    setup_logging("INFO", json=True, stream=second)
    setup_logging("INFO", json=True, stream=second)
    logging.getLogger("x").info("once")
    assert len(second.getvalue().splitlines()) == 1 and stream.getvalue() == ""
    assert logging.getLogger("kafka").level == logging.WARNING


def test_redaction_filter_leaves_ordinary_text_alone() -> None:
    f = RedactionFilter(secrets=["ab"])  # too short to register: would mangle ordinary words
    text = "PMP-001 bearing_temp=81.2 degC tokens_total: 5 about http://host:8086/ping"
    assert f.redact(text) == text


def test_cli_global_logging_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_LOG_JSON", raising=False)
    monkeypatch.delenv("VIGIL_LOG_LEVEL", raising=False)
    assert _logging_options(["--log-json", "--log-level", "debug", "features", "--x"]) == (
        ["features", "--x"],
        True,
        "debug",
    )
    assert _logging_options(["--log-level=WARNING", "alerts"]) == (["alerts"], False, "WARNING")
    monkeypatch.setenv("VIGIL_LOG_JSON", "1")
    monkeypatch.setenv("VIGIL_LOG_LEVEL", "ERROR")
    assert _logging_options(["models", "--log-json"]) == (["models", "--log-json"], True, "ERROR")


def test_default_handler_follows_sys_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = list(root.handlers)
    try:
        setup_logging("INFO", json=True)
        first, second = io.StringIO(), io.StringIO()
        monkeypatch.setattr("sys.stderr", first)
        logging.getLogger("t").info("one", extra={"machine_id": "CMP-002"})
        monkeypatch.setattr("sys.stderr", second)  # e.g. a test runner swapped it; the old one may be closed
        first.close()
        logging.getLogger("t").info("two")
    finally:
        for handler in [h for h in root.handlers if h not in saved]:
            root.removeHandler(handler)
    assert json.loads(second.getvalue())["message"] == "two"


def test_cli_registers_secrets_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vigil.cli import main

    monkeypatch.setenv("VIGIL_INFLUX__TOKEN", "env-token-0123456789")
    monkeypatch.setenv("VIGIL_KAFKA__SASL_PASSWORD", "env-sasl-pass")
    monkeypatch.delenv("VIGIL_LOG_JSON", raising=False)
    root = logging.getLogger()
    saved = list(root.handlers)
    try:
        assert main(["--log-json", "--help"]) == 0
        logging.getLogger("kafka.conn").warning("auth failed with env-sasl-pass for token env-token-0123456789")
    finally:
        for handler in [h for h in root.handlers if h not in saved]:
            root.removeHandler(handler)
    err = capsys.readouterr().err
    record = json.loads(err.strip().splitlines()[-1])
    assert record["message"] == f"auth failed with {REDACTED} for token {REDACTED}"
    assert "env-sasl-pass" not in err and "env-token" not in err
