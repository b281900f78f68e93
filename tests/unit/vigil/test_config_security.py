"""TLS and secret-file settings of [kafka], [influx] and [mqtt]: what is accepted, what is refused and named."""

from __future__ import annotations

import copy
import ssl
from pathlib import Path
from typing import Any

import pytest

from vigil.config import EXAMPLE_CONFIG, load_config
from vigil.config.connections import InfluxSettings, KafkaSettings, MqttSettings
from vigil.config.security import TlsSettings, certificate_refusal
from vigil.exceptions import ConfigError
from vigil.pki import CertificateAuthority, Issued

SECRET = "s3cret-Only-In-The-File"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(folder)
    client: Issued = ca.issue("client", client=True)
    locked: Issued = ca.issue("locked", client=True, key_password=b"key-pass")
    other: Issued = CertificateAuthority(folder / "other").issue("other", client=True)
    return {
        "ca": ca.cert_file,
        "cert": client.cert_file,
        "key": client.key_file,
        "locked_cert": locked.cert_file,
        "locked_key": locked.key_file,
        "other_key": other.key_file,
    }


def _example(**sections: dict[str, Any]) -> dict[str, Any]:
    import tomllib

    data = tomllib.loads(EXAMPLE_CONFIG.read_text())
    for name, values in sections.items():
        data[name] = {**copy.deepcopy(data.get(name, {})), **values}
    return data


def _problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config(data=data, environ={})
    return info.value.problems


def test_kafka_sasl_ssl_with_ca_and_password_file_builds_a_verifying_context(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text(SECRET + "\n")
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="features",
        sasl_password_file=secret,
        tls=TlsSettings(ca_file=pki["ca"]),
    )
    assert kafka.sasl_password is not None and kafka.sasl_password.get_secret_value() == SECRET  # newline dropped
    kwargs = kafka.client_kwargs()
    ctx = kwargs["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512" and kwargs["sasl_plain_password"] == SECRET
    assert SECRET not in repr(kafka) and SECRET not in str(kafka.model_dump())


def test_mutual_tls_with_an_encrypted_key_and_tls13(pki: dict[str, Path]) -> None:
    tls = TlsSettings(
        ca_file=pki["ca"], cert_file=pki["locked_cert"], key_file=pki["locked_key"], key_password="key-pass"
    )
    kafka = KafkaSettings(security_protocol="SSL", tls=tls.model_copy(update={"min_version": "TLSv1.3"}))
    assert kafka.client_kwargs()["ssl_context"].minimum_version == ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize(
    ("tls", "fragment"),
    [
        ({"key_file": "KEY"}, "key_file is set but cert_file is not"),
        ({"cert_file": "LOCKED_CERT", "key_file": "LOCKED_KEY"}, "cert_file/key_file/key_password"),
        ({"cert_file": "LOCKED_CERT", "key_file": "LOCKED_KEY", "key_password": "wrong"}, "cannot load"),
        ({"cert_file": "CERT", "key_file": "OTHER_KEY"}, "cannot load the client certificate and key"),
        ({"ca_file": "KEY"}, "ca_file: not a PEM CA bundle"),
    ],
)
def test_half_configured_tls_is_refused_naming_the_key(
    pki: dict[str, Path], tls: dict[str, str], fragment: str
) -> None:
    values = {k: (str(pki[v.lower()]) if v.isupper() else v) for k, v in tls.items()}
    data = _example(kafka={"security_protocol": "SSL", "tls": values})
    problems = _problems(data)
    assert [p for p, _ in problems] == ["kafka.tls"]
    assert fragment in problems[0][1]
    assert "wrong" not in problems[0][1] and "key-pass" not in problems[0][1]


def test_an_unreadable_file_is_refused_with_its_exact_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    problems = _problems(_example(mqtt={"tls": {"ca_file": str(missing)}}))
    assert problems == [("mqtt.tls.ca_file", f"Value error, no such file: {missing}".removeprefix("Value error, "))]
    problems = _problems(_example(influx={"password_file": str(missing)}))
    assert [p for p, _ in problems] == ["influx.password_file"]


def test_a_secret_and_its_file_together_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(SECRET)
    problems = _problems(_example(influx={"token": "inline", "token_file": str(secret)}))
    assert problems and "set token or token_file, not both" in problems[0][1]
    assert SECRET not in str(problems) and "inline" not in str(problems)


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "empty"
    secret.write_text("\n")
    problems = _problems(_example(mqtt={"username": "collector", "password_file": str(secret)}))
    assert "password_file" in problems[0][1] and "is empty" in problems[0][1]


@pytest.mark.parametrize(
    ("kafka", "fragment"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism, sasl_username and sasl_password"),
        ({"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p"}, "security_protocol is PLAINTEXT"),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": "p",
            },
            "sends the password in clear",
        ),
        ({"tls": {"check_hostname": False}}, "tls is configured but security_protocol is PLAINTEXT"),
    ],
)
def test_kafka_security_combinations_that_cannot_work_are_refused(kafka: dict[str, Any], fragment: str) -> None:
    problems = _problems(_example(kafka=kafka))
    assert [p for p, _ in problems] == ["kafka"]
    assert fragment in problems[0][1]


def test_influx_tls_needs_an_https_url(pki: dict[str, Path]) -> None:
    problems = _problems(_example(influx={"url": "http://db:8086", "tls": {"ca_file": str(pki["ca"])}}))
    assert problems and "is not https://" in problems[0][1]
    https = InfluxSettings(url="https://db:8086", tls=TlsSettings(ca_file=pki["ca"]))
    assert isinstance(https.ssl_context(), ssl.SSLContext)
    assert InfluxSettings(url="http://db:8086").ssl_context() is None


def test_mqtt_tls_accepts_the_old_boolean_and_a_table(pki: dict[str, Path]) -> None:
    assert MqttSettings(tls=True).tls == TlsSettings()  # type: ignore[arg-type]
    assert MqttSettings(tls=False).tls is None  # type: ignore[arg-type]
    assert MqttSettings().tls is None
    config = load_config(data=_example(mqtt={"tls": {"ca_file": str(pki["ca"])}}), environ={})
    assert config.mqtt.tls is not None and config.mqtt.tls.ca_file == pki["ca"]


def test_secrets_from_files_through_the_environment(tmp_path: Path, pki: dict[str, Path]) -> None:
    secret = tmp_path / "sasl"
    secret.write_text(SECRET)
    config = load_config(
        EXAMPLE_CONFIG,
        environ={
            "VIGIL_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "VIGIL_KAFKA__SASL_MECHANISM": "SCRAM-SHA-256",
            "VIGIL_KAFKA__SASL_USERNAME": "collector",
            "VIGIL_KAFKA__SASL_PASSWORD_FILE": str(secret),
            "VIGIL_KAFKA__TLS__CA_FILE": str(pki["ca"]),
            "VIGIL_MQTT__TLS": "true",
        },
    )
    assert config.kafka.sasl_password is not None and config.kafka.sasl_password.get_secret_value() == SECRET
    assert config.kafka.tls.ca_file == pki["ca"]
    assert config.mqtt.tls == TlsSettings()


def test_config_check_prints_no_secret_and_names_the_key(
    tmp_path: Path, pki: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vigil.config import main

    secret = tmp_path / "sasl"
    secret.write_text(SECRET)
    monkeypatch.setenv("VIGIL_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("VIGIL_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("VIGIL_KAFKA__SASL_USERNAME", "features")
    monkeypatch.setenv("VIGIL_KAFKA__SASL_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("VIGIL_KAFKA__TLS__CA_FILE", str(pki["ca"]))
    assert main(["check", str(EXAMPLE_CONFIG)]) == 0
    monkeypatch.setenv("VIGIL_KAFKA__TLS__KEY_FILE", str(pki["key"]))
    assert main(["check", str(EXAMPLE_CONFIG)]) == 1
    out = capsys.readouterr()
    assert "kafka.tls: key_file is set but cert_file is not" in out.err
    assert SECRET not in out.out + out.err


def test_certificate_refusals_name_the_setting() -> None:
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "unable to get local issuer certificate"
    wrapped = OSError("connect failed")
    wrapped.__cause__ = untrusted
    message = certificate_refusal("influx", wrapped)
    assert message is not None and message.startswith("influx.tls.ca_file: the server's certificate is not trusted")
    assert certificate_refusal("mqtt", ConnectionRefusedError(111, "refused")) is None
