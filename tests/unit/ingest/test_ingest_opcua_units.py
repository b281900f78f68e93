"""OPC UA collector pieces that need no server: pattern matching, DataValue -> Reading, backoff, certificates."""

from __future__ import annotations

import asyncio
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asyncua import ua
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ingest.backoff import Backoff
from ingest.exceptions import MappingError, OpcUaSecurityError
from ingest.opcua.collector import OpcUaCollector, to_reading
from ingest.opcua.mapping import Binding, match_objects, match_sensors, parse_browse_path
from ingest.opcua.security import check_validity
from vigil.config import OpcUaPattern, OpcUaSecurity, VigilConfig, load_config
from vigil.contracts import Quality
from vigil.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[3]
T = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
BINDING = Binding("PMP-001", "flow", ua.NodeId(ua.String("PMP-001.flow"), ua.Int16(2)), "m3/h", 250.0, None)


def test_pattern_accepts_only_configured_machines_of_its_type(example_config: VigilConfig) -> None:
    pattern = OpcUaPattern(folder="0:Objects/2:Plant", glob="PMP-*", machine_type="pump")
    names = ["PMP-001", "PMP-004", "PMP-999", "MTR-001", "Server"]
    accepted, rejected = match_objects(pattern, names, example_config)
    assert accepted == {"PMP-001": "PMP-001", "PMP-004": "PMP-004"}
    assert rejected == {"PMP-999": "unknown_machine"}  # MTR-001 and Server do not match the glob at all
    wrong_type = OpcUaPattern(folder="0:Objects/2:Plant", glob="*-001", machine_type="motor")
    accepted, rejected = match_objects(wrong_type, names, example_config)
    assert accepted == {"MTR-001": "MTR-001"}
    assert rejected == {"PMP-001": "type_mismatch"}


def test_pattern_id_template_and_sensor_names(example_config: VigilConfig) -> None:
    pattern = OpcUaPattern(
        folder="0:Objects/3:Site",
        glob="Pump*",
        machine_type="pump",
        id_template="PMP-00{name[4]}",
        sensor_names={"BearingTemperature": "bearing_temp", "Flow": "flow"},
    )
    accepted, rejected = match_objects(pattern, ["Pump1", "Pump9"], example_config)
    assert accepted == {"Pump1": "PMP-001"} and rejected == {"Pump9": "unknown_machine"}
    machine = example_config.machines_by_id["PMP-001"]
    sensors, unknown = match_sensors(pattern, machine, ["BearingTemperature", "Flow", "speed", "Colour"])
    assert sensors == {"BearingTemperature": "bearing_temp", "Flow": "flow", "speed": "speed"}
    assert unknown == ["Colour"]


def test_browse_paths_need_a_namespace_index_or_uri() -> None:
    assert parse_browse_path("/0:Objects/2:Plant/") == [(0, "Objects"), (2, "Plant")]
    assert parse_browse_path("0:Objects/nsu=urn:vigil:simulator;Plant") == [
        (0, "Objects"),
        ("urn:vigil:simulator", "Plant"),
    ]
    with pytest.raises(MappingError, match="Plant"):
        parse_browse_path("0:Objects/Plant")


def _plant_with(source: dict[str, object]) -> dict[str, object]:
    data = tomllib.loads((ROOT / "config" / "plant.example.toml").read_text())
    data["sources"] = {"opcua": [{"name": "s", "endpoint": "opc.tcp://h:4840/", **source}]}
    return data


def test_config_check_refuses_node_id_and_browse_path_syntax_naming_the_key() -> None:
    bad_node = _plant_with({"nodes": [{"machine": "PMP-001", "sensor": "flow", "node_id": "P-101.speed"}]})
    with pytest.raises(
        ConfigError, match=r"sources\.opcua\[0\]\.nodes\[0\]\.node_id: .*'P-101\.speed' is not a NodeId"
    ):
        load_config(data=bad_node, environ={})
    bad_folder = _plant_with({"patterns": [{"folder": "Objects/Plant", "machine_type": "pump"}]})
    with pytest.raises(ConfigError, match=r"sources\.opcua\[0\]\.patterns\[0\]\.folder: .*part 'Objects'"):
        load_config(data=bad_folder, environ={})
    bad_path = _plant_with({"nodes": [{"machine": "PMP-001", "sensor": "flow", "browse_path": "0:Objects/Plant/x"}]})
    with pytest.raises(ConfigError, match=r"nodes\[0\]\.browse_path: .*part 'Plant'"):
        load_config(data=bad_path, environ={})
    fine = _plant_with(
        {
            "nodes": [
                {"machine": "PMP-001", "sensor": "flow", "node_id": "nsu=urn:vigil:simulator;s=PMP-001.flow"},
                {"machine": "PMP-001", "sensor": "speed", "node_id": "ns=2;i=1042"},
            ],
            "patterns": [{"folder": "0:Objects/nsu=http://vigil.example/ns;Plant", "machine_type": "pump"}],
        }
    )
    assert len(load_config(data=fine, environ={}).sources.opcua[0].nodes) == 2


def _dv(value: object, code: int = 0, source: datetime | None = T, server: datetime | None = None) -> ua.DataValue:
    variant = ua.Variant(value, ua.VariantType.String if isinstance(value, str) else ua.VariantType.Double)
    return ua.DataValue(
        Value=variant,
        StatusCode=ua.StatusCode(ua.UInt32(code)),
        SourceTimestamp=source,  # type: ignore[arg-type]
        ServerTimestamp=server,  # type: ignore[arg-type]
    )


def test_status_code_maps_to_quality_and_both_timestamps_are_kept() -> None:
    server = T + timedelta(milliseconds=300)
    good = to_reading(BINDING, _dv(12.5, 0, T, server), "s", "source")
    assert (good.quality, good.value, good.ts, good.server_ts, good.unit) == (Quality.GOOD, 12.5, T, server, "m3/h")
    uncertain = to_reading(BINDING, _dv(12.5, 0x40930000, T, server), "s", "source")  # UncertainSensorNotAccurate
    assert uncertain.quality is Quality.UNCERTAIN and uncertain.status_code == 0x40930000
    bad = to_reading(BINDING, _dv(float("nan"), 0x808C0000, T, server), "s", "source")  # BadSensorFailure
    assert bad.quality is Quality.BAD
    by_server = to_reading(BINDING, _dv(1.0, 0, T, server), "s", "server")
    assert by_server.ts == server and by_server.server_ts == server
    no_source = to_reading(BINDING, _dv(1.0, 0, None, server), "s", "source")
    assert no_source.ts == server  # falls back to the other timestamp, never invents one when there is one


def test_wrong_types_become_flagged_none() -> None:
    r = to_reading(BINDING, _dv("hot"), "s", "source")
    assert r.value is None and r.flags == ("wrong_type",)
    assert to_reading(BINDING, _dv(3), "s", "source").value == 3.0


def test_backoff_follows_the_outage_with_jitter_and_resets() -> None:
    now = [0.0]
    b = Backoff(0.5, 60.0, jitter=0.25, seed=1, clock=lambda: now[0])
    delays = []
    for _ in range(40):
        delays.append(b.next())
        now[0] += delays[-1] + 0.01  # a refused connection fails at once
    outage = 0.0
    for d in delays:
        base = max(0.5, min(60.0, 0.1 * outage))
        assert base * 0.75 <= d <= base
        outage += d + 0.01
    # The case: a server back after 20 s is tried again within ~2 s (was 26-28 s).
    assert all(d <= 2.5 for d, t in zip(delays, [sum(delays[:i]) for i in range(len(delays))], strict=True) if t < 25)
    assert len(set(delays[5:])) == len(delays[5:]), "jittered"
    b.reset()
    assert b.next() <= 0.5


def _cert(not_before: datetime, not_after: datetime) -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )


def test_certificate_dates_are_checked() -> None:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    check_validity(_cert(now - timedelta(days=1), now + timedelta(days=1)), "server", now)
    with pytest.raises(OpcUaSecurityError, match="expired on 2026-11-25"):
        check_validity(_cert(now - timedelta(days=9), now - timedelta(days=1)), "server", now)
    with pytest.raises(OpcUaSecurityError, match="not valid before"):
        check_validity(_cert(now + timedelta(days=1), now + timedelta(days=9)), "client", now)


def test_security_configuration_is_all_or_nothing() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="server_certificate"):
        OpcUaSecurity(policy="Basic256Sha256", mode="Sign", certificate="c.der", private_key="k.pem")
    with pytest.raises(ValidationError, match="both be None or both be set"):
        OpcUaSecurity(policy="Basic256Sha256")
    data = tomllib.loads((ROOT / "config" / "plant.example.toml").read_text())
    data["sources"]["opcua"][0]["security"] = {
        "policy": "Basic256Sha256",
        "mode": "SignAndEncrypt",
        "certificate": "c.der",
        "private_key": "k.pem",
    }
    with pytest.raises(ConfigError, match=r"sources\.opcua\[0\]\.security: .*server_certificate"):
        load_config(data=data, environ={})


def test_drops_in_asyncuas_full_subscription_queue_are_counted(example_config: VigilConfig) -> None:
    """asyncua drops the oldest event of a full iterator queue silently; the collector counts every drop."""
    from asyncua.common.subscription import OverflowPolicy, StatusChangeEvent, Subscription

    async def scenario() -> tuple[int, int]:
        sub = Subscription(
            None, ua.CreateSubscriptionParameters(), queue_maxsize=2, overflow=OverflowPolicy.DROP_OLDEST
        )  # type: ignore[arg-type]
        collector = OpcUaCollector(example_config.sources.opcua[0], example_config)
        collector._count_drops(sub)
        for _ in range(5):
            sub._deliver(StatusChangeEvent(notification=ua.StatusChangeNotification()))
        assert sub._event_queue is not None
        return collector.counters["dropped_overflow"], sub._event_queue.qsize()

    assert asyncio.run(scenario()) == (3, 2)  # five events into a queue of two: three dropped, each counted
