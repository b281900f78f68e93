"""Sparkplug B without a broker: births and aliases, data, seq gaps, deaths as Gaps, stale deaths, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.sparkplug import Payload, SparkplugDecoder
from vigil.config import SparkplugSource, VigilConfig
from vigil.contracts import Gap, Reading

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
DOUBLE, INT16, INT64, STRING = 10, 2, 4, 12


def payload(seq: int, *metrics: dict[str, Any], ts: datetime = T0) -> bytes:
    p = Payload(timestamp=int(ts.timestamp() * 1000), seq=seq)
    for m in metrics:
        p.metrics.add(**m)
    return bytes(p.SerializeToString())


def birth_metrics() -> list[dict[str, Any]]:
    return [
        {"name": "flow", "alias": 1, "datatype": DOUBLE, "double_value": 410.5},
        {"name": "Speed", "alias": 2, "datatype": INT16, "int_value": 2950},
        {"name": "colour", "alias": 3, "datatype": STRING, "string_value": "red"},
    ]


def test_births_aliases_data_seq_gaps_and_deaths(example_config: VigilConfig) -> None:
    source = SparkplugSource(name="spb", group_id="plant", devices={"pumps/P1": "PMP-001"}, metrics={"Speed": "speed"})
    d = SparkplugDecoder(source, example_config)
    now = [T0]

    def send(topic: str, data: bytes) -> list[Reading | Gap]:
        now[0] += timedelta(seconds=1)
        return d.handle(f"spBv1.0/plant/{topic}", data, now[0])

    assert send("DDATA/pumps/P1", payload(1, {"alias": 1, "double_value": 1.0})) == []  # before any NBIRTH
    assert d.counters["no_birth"] == 1
    assert send("NBIRTH/pumps", payload(0, {"name": "bdSeq", "datatype": INT64, "long_value": 7})) == []
    born = send("DBIRTH/pumps/P1", payload(1, *birth_metrics()))
    assert [(r.sensor, r.value, r.unit) for r in born if isinstance(r, Reading)] == [
        ("flow", 410.5, "m3/h"),
        ("speed", 2950.0, "rpm"),
    ]
    assert d.counters["unknown_sensor"] == 1  # colour: no such sensor, never created
    data = send(
        "DDATA/pumps/P1", payload(2, {"alias": 1, "double_value": 411.0, "timestamp": int(T0.timestamp() * 1000) + 500})
    )
    assert [(r.sensor, r.value, r.ts) for r in data if isinstance(r, Reading)] == [
        ("flow", 411.0, T0 + timedelta(milliseconds=500))
    ]
    negative = send("DDATA/pumps/P1", payload(3, {"alias": 2, "int_value": 0xFFFF}))  # Int16 -1
    assert [r.value for r in negative if isinstance(r, Reading)] == [-1.0]
    # seq 4 is lost: a Gap for the node's devices from their last value to now, then the values.
    skipped = send("DDATA/pumps/P1", payload(5, {"alias": 1, "double_value": 412.0}))
    assert isinstance(skipped[0], Gap) and skipped[0].machine_id == "PMP-001" and d.counters["seq_gap"] == 1
    assert isinstance(skipped[1], Reading)
    assert send("DDATA/pumps/P1", payload(6, {"alias": 9, "double_value": 1.0})) == []
    assert d.counters["unknown_alias"] == 1
    # The device dies and is reborn: a Gap on the collector's clock before the birth's values.
    last_value_at = now[0] - timedelta(seconds=2)
    assert send("DDEATH/pumps/P1", payload(7)) == []
    reborn = send("DBIRTH/pumps/P1", payload(8, *birth_metrics()))
    gap = reborn[0]
    assert isinstance(gap, Gap) and gap.reason == "connection_lost" and gap.machine_id == "PMP-001"
    assert gap.start == last_value_at + timedelta(seconds=1) and gap.end == now[0]
    # A stale NDEATH (an older session's bdSeq) is ignored; the session's own one kills every device.
    assert send("NDEATH/pumps", payload(0, {"name": "bdSeq", "datatype": INT64, "long_value": 6})) == []
    assert d.counters["stale_death"] == 1
    send("NDEATH/pumps", payload(0, {"name": "bdSeq", "datatype": INT64, "long_value": 7}))
    assert send("DDATA/pumps/P1", payload(9, {"alias": 1, "double_value": 1.0})) == []  # dead until reborn
    send("NBIRTH/pumps", payload(0, {"name": "bdSeq", "datatype": INT64, "long_value": 8}))
    again = send("DBIRTH/pumps/P1", payload(1, *birth_metrics()))
    assert isinstance(again[0], Gap) and d.counters["gaps"] == 3


def test_unknown_devices_and_garbage_are_counted(example_config: VigilConfig) -> None:
    d = SparkplugDecoder(SparkplugSource(name="spb", group_id="plant"), example_config)
    d.handle("spBv1.0/plant/NBIRTH/e", payload(0))
    assert d.handle("spBv1.0/plant/DBIRTH/e/PMP-999", payload(1, *birth_metrics())) == []
    assert d.counters["unknown_machine"] == 1
    assert d.handle("spBv1.0/plant/DDATA/e/PMP-001", b"\xff\xff\xff") == []
    assert d.counters["undecodable"] == 1
    assert d.handle("spBv1.0/other/DDATA/e/PMP-001", payload(2)) == []  # another group: not this source's
    readings = d.handle("spBv1.0/plant/DBIRTH/e/PMP-001", payload(2, *birth_metrics()))
    assert {r.sensor for r in readings if isinstance(r, Reading)} == {"flow"}  # 'Speed' unmapped here


def test_rebirth_is_requested_when_aliases_cannot_be_known_once_per_interval(example_config: VigilConfig) -> None:
    source = SparkplugSource(name="spb", group_id="plant", devices={"pumps/P1": "PMP-001"}, rebirth_interval_s=5)
    d = SparkplugDecoder(source, example_config)

    def send(topic: str, data: bytes, at_s: float) -> list[str]:
        d.handle(f"spBv1.0/plant/{topic}", data, T0 + timedelta(seconds=at_s))
        return d.take_rebirths()

    # The collector started after the node's birth: its data cannot be read, so the node is asked to rebirth,
    # once per interval (its NBIRTH may take a moment), and again after the interval.
    assert send("DDATA/pumps/P1", payload(7, {"alias": 1, "double_value": 1.0}), 0) == ["pumps"]
    assert send("DDATA/pumps/P1", payload(8, {"alias": 1, "double_value": 1.0}), 1) == []
    assert send("DDATA/pumps/P1", payload(9, {"alias": 1, "double_value": 1.0}), 6) == ["pumps"]
    assert d.counters["rebirth_requests"] == 2
    send("NBIRTH/pumps", payload(0, {"name": "bdSeq", "datatype": INT64, "long_value": 1}), 6.5)
    send("DBIRTH/pumps/P1", payload(1, *birth_metrics()), 6.6)
    assert send("DDATA/pumps/P1", payload(2, {"alias": 1, "double_value": 2.0}), 7) == []  # reborn: readable
    # An alias the birth did not declare, right after the birth: asked again at once (the NBIRTH reset the timer).
    assert send("DDATA/pumps/P1", payload(3, {"alias": 9, "double_value": 2.0}), 7.5) == ["pumps"]
    # A skipped seq (a lost message may have been a birth) asks too, after the interval.
    assert send("DDATA/pumps/P1", payload(9, {"alias": 1, "double_value": 3.0}), 13) == ["pumps"]
    assert d.counters["rebirth_requests"] == 4


def test_no_rebirth_requests_when_turned_off(example_config: VigilConfig) -> None:
    source = SparkplugSource(name="spb", group_id="plant", rebirth=False)
    d = SparkplugDecoder(source, example_config)
    d.handle("spBv1.0/plant/DDATA/pumps/P1", payload(7, {"alias": 1, "double_value": 1.0}), T0)
    assert d.take_rebirths() == [] and d.counters["rebirth_requests"] == 0 and d.counters["no_birth"] == 1
