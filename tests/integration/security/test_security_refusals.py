"""What the secured stack refuses, and how Vigil says so: at start-up, naming the setting, never the secret.

Wrong passwords (Kafka, InfluxDB, MQTT), a broker certificate from a CA Vigil does not trust, a server reached by
a name its certificate does not carry, and a service configured to write a topic its ACLs do not allow.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from ingest.collector_cli import ensure_reading_topics
from ingest.exceptions import SourceError
from ingest.mqtt import MqttCollector
from ingest.publisher import KafkaPublisher
from ingest.validation import Validator
from vigil.bus import TopicSpec, ensure_topics, make_producer
from vigil.config import EXAMPLE_CONFIG, MqttMapping, MqttSource, PublishSettings, SpoolSettings, Topics, load_config
from vigil.exceptions import KafkaRefused
from vigil.influx import InfluxError, ensure_target
from vigil.pki import CertificateAuthority
from vigil.testing import forwarded

pytestmark = pytest.mark.integration

WRONG = "not-the-Password-42"


def _secrets(secure: Any) -> list[str]:
    return [*secure.secrets(), WRONG]


def _clean(message: str, secure: Any) -> None:
    for secret in _secrets(secure):
        assert secret not in message


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that signed none of the stack's certificates."""
    ca = CertificateAuthority(tmp_path_factory.mktemp("other-ca"), name="Someone else's CA")
    ca.issue("unused")
    return ca.cert_file


def test_kafka_wrong_password_is_named_and_not_retried(secure: Any, secure_topics: Topics) -> None:
    kafka = secure.kafka("collector", sasl_password_file=None, sasl_password=WRONG)
    with pytest.raises(KafkaRefused) as info:
        ensure_topics(kafka, [TopicSpec(secure_topics.readings, 1)], max_wait_s=120)
    message = str(info.value)
    assert message.startswith("kafka.sasl_username/kafka.sasl_password: ")
    assert "refused the login of 'collector'" in message
    _clean(message, secure)


def test_kafka_untrusted_and_misnamed_broker_certificates(secure: Any, secure_topics: Topics, other_ca: Path) -> None:
    untrusted = secure.kafka("features", tls={"ca_file": str(other_ca)})
    with pytest.raises(KafkaRefused) as info:
        ensure_topics(untrusted, [TopicSpec(secure_topics.features, 1)], max_wait_s=120)
    assert str(info.value).startswith("kafka.tls.ca_file: the server's certificate is not trusted")
    _clean(str(info.value), secure)
    with forwarded((secure.sc.host, secure.sc.kafka_port)) as (host, port):
        misnamed = secure.kafka("features", bootstrap_servers=f"{host}:{port}")
        with pytest.raises(KafkaRefused) as info:
            ensure_topics(misnamed, [TopicSpec(secure_topics.features, 1)], max_wait_s=120)
    assert str(info.value).startswith("kafka.tls.check_hostname: the server's certificate does not name the host")
    assert host in str(info.value)


def _collector_config(secure: Any, topics: Topics) -> Any:
    plant = tomllib.loads(EXAMPLE_CONFIG.read_text())
    data = {**plant, "kafka": secure.kafka_data("collector"), "topics": topics.model_dump()}
    return load_config(environ={}, data=data)


def test_a_collector_configured_to_write_alerts_stops_at_start_up(secure: Any, secure_topics: Topics) -> None:
    from kafka.errors import TopicAuthorizationFailedError

    ensure_topics(secure.kafka("admin"), [TopicSpec(secure_topics.alerts, 1)])
    hijack = secure_topics.model_copy(update={"readings": secure_topics.alerts})
    with pytest.raises(KafkaRefused) as info:
        ensure_reading_topics(_collector_config(secure, hijack))
    message = str(info.value)
    assert "kafka.sasl_username: the ACLs of Kafka user 'collector'" in message
    assert f"topics.readings: may not WRITE topic '{secure_topics.alerts}'" in message
    _clean(message, secure)
    # Not only Vigil's own check: the broker refuses the record itself.
    producer = make_producer(secure.kafka("collector"))
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(secure_topics.alerts, b"{}").get(timeout=30)
    finally:
        producer.close()
    # And the collector may still write its own readings topic.
    ensure_reading_topics(_collector_config(secure, secure_topics))


def test_influx_wrong_password_untrusted_and_misnamed_certificates(secure: Any, other_ca: Path) -> None:
    with pytest.raises(InfluxError) as info:
        ensure_target(secure.influx("vigil", password_file=None, password=WRONG))
    assert str(info.value).startswith("influx.username/influx.password: ")
    _clean(str(info.value), secure)
    with pytest.raises(InfluxError) as info:
        ensure_target(secure.influx("vigil", tls={"ca_file": str(other_ca)}))
    assert str(info.value).startswith("influx.tls.ca_file: the server's certificate is not trusted")
    with forwarded((secure.sc.host, secure.sc.influx_port)) as (host, port), pytest.raises(InfluxError) as info:
        ensure_target(secure.influx("vigil", url=f"https://{host}:{port}"))
    assert str(info.value).startswith("influx.tls.check_hostname: ")
    _clean(str(info.value), secure)
    assert "vigil" in ensure_target(secure.influx("vigil"))  # the right settings pass


def _collector(secure: Any, tmp_path: Path, **mqtt: Any) -> MqttCollector:
    config = _collector_config(secure, Topics())
    source = MqttSource(
        name="gateway",
        topics=["vigil-test/refusals/#"],
        mapping=MqttMapping(machine="machine", sensor="sensor", ts="t", value="v"),
    )
    publisher = KafkaPublisher(
        config.kafka, config.topics, SpoolSettings(path=tmp_path / "spool.sqlite"), PublishSettings()
    )
    return MqttCollector(secure.mqtt("collector", **mqtt), source, publisher, Validator(config))


def test_mqtt_wrong_password_untrusted_and_misnamed_certificates(secure: Any, other_ca: Path, tmp_path: Path) -> None:
    collector = _collector(secure, tmp_path, password_file=None, password=WRONG)
    with collector, pytest.raises(SourceError) as info:
        collector.wait_subscribed(30)
    assert str(info.value).startswith("mqtt.username/mqtt.password: ")
    _clean(str(info.value), secure)
    with pytest.raises(SourceError) as info:
        _collector(secure, tmp_path, tls={"ca_file": str(other_ca)}).start()
    assert str(info.value).startswith("mqtt.tls.ca_file: the server's certificate is not trusted")
    with forwarded((secure.sc.host, secure.sc.mqtt_port)) as (host, port), pytest.raises(SourceError) as info:
        _collector(secure, tmp_path, host=host, port=port).start()
    assert str(info.value).startswith("mqtt.tls.check_hostname: ")
    with _collector(secure, tmp_path) as collector:
        assert collector.wait_subscribed(30)  # the right settings pass
