"""Plant configuration: the example loads; broken files are refused naming the key path and the reason."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from vigil.config import EXAMPLE_CONFIG, load_config
from vigil.exceptions import ConfigError


def example() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE_CONFIG.read_text())


def test_example_config_loads_and_resolves_machines() -> None:
    config = load_config(EXAMPLE_CONFIG, environ={})
    assert len(config.machines) == 12
    pmp4 = config.machines_by_id["PMP-004"]
    assert (pmp4.site, pmp4.type) == ("south", "pump")
    # The per-machine override replaces the type's range and limit for that machine only.
    assert pmp4.sensors["bearing_temp"].range.max == 160
    assert pmp4.sensors["bearing_temp"].limits.high == 105
    assert config.machines_by_id["PMP-001"].sensors["bearing_temp"].limits.high == 95


def _break(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    data = example()
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


BROKEN: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "inverted range",
        _break(("machines", 3, "sensors", "bearing_temp"), {"range": {"min": 90, "max": 80}}),
        "machines[3].sensors.bearing_temp.range",
        "min 90 > max 80",
    ),
    (
        "unknown machine type",
        _break(("machines", 0, "type"), "pumpp"),
        "machines[0].type",
        "unknown machine type 'pumpp'",
    ),
    ("unknown line", _break(("machines", 5, "line"), "east-9"), "machines[5].line", "unknown line 'east-9'"),
    ("line of unknown site", _break(("lines", 1, "site"), "west"), "lines[1].site", "unknown site 'west'"),
    (
        "sensor the type lacks",
        _break(("machines", 2, "sensors"), {"oil_temp": {"limits": {"high": 1}}}),
        "machines[2].sensors.oil_temp",
        "has no sensor 'oil_temp'",
    ),
    (
        "typo in a key",
        _break(("windows", "sise_s"), 30),
        "windows.sise_s",
        "unknown key",
    ),
    ("negative window", _break(("windows", "size_s"), -5), "windows.size_s", "greater than 0"),
    (
        "hop without hopping",
        _break(("windows", "hop_s"), 10),
        "windows",
        "hop_s applies to hopping windows only",
    ),
    (
        "limits inverted",
        _break(("machine_types", "motor", "sensors", "current", "limits"), {"low": 300, "high": 10}),
        "machine_types.motor.sensors.current.limits",
        "low 300 >= high 10",
    ),
    (
        "bad OPC UA endpoint",
        _break(("sources", "opcua", 0, "endpoint"), "http://x"),
        "sources.opcua[0].endpoint",
        "should match pattern",
    ),
    (
        "security policy without certificate",
        _break(("sources", "opcua", 0, "security"), {"policy": "Basic256Sha256", "mode": "SignAndEncrypt"}),
        "sources.opcua[0].security",
        "needs certificate and private_key",
    ),
    (
        "duplicate machine id",
        _break(("machines", 1, "id"), "PMP-001"),
        "machines[1]",
        "duplicate id 'PMP-001'",
    ),
    (
        "route to unknown receiver",
        _break(("alerts", "routes"), [{"receiver": "pager"}]),
        "alerts.routes[0].receiver",
        "unknown receiver 'pager'",
    ),
    (
        "lead time longer than horizon",
        _break(("models", "min_lead_s"), 10**7),
        "models",
        "must be < horizon_s",
    ),
    (
        "derived feature of unknown sensor",
        _break(("machine_types", "pump", "derived"), [{"name": "x", "op": "ratio", "a": "flow", "b": "nope"}]),
        "machine_types.pump",
        "unknown sensor 'nope'",
    ),
    ("wrong type", _break(("kafka", "partitions"), "four"), "kafka.partitions", "valid integer"),
    ("no machines", _break(("machines",), []), "machines", "at least 1"),
]


@pytest.mark.parametrize(("case", "data", "path", "reason"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_configuration_names_key_path_and_reason(
    case: str, data: dict[str, Any], path: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(data=data, environ={})
    paths = [p for p, _ in info.value.problems]
    assert path in paths, f"{case}: expected {path!r} in {paths}"
    message = dict(info.value.problems)[path]
    assert reason in message, f"{case}: {message!r} lacks {reason!r}"
    assert f"{path}: " in str(info.value)


def test_bad_file_and_bad_toml_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka\nbootstrap_servers = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})


def test_environment_overrides_file_and_is_validated_too() -> None:
    config = load_config(
        EXAMPLE_CONFIG,
        environ={"VIGIL_KAFKA__BOOTSTRAP_SERVERS": "broker:9092", "VIGIL_INFLUX__PASSWORD": "s3cret-value"},
    )
    assert config.kafka.bootstrap_servers == "broker:9092"
    assert config.kafka.partitions == 4  # the rest of the section still comes from the file
    assert config.influx.password is not None
    assert config.influx.password.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(config) and "s3cret-value" not in str(config.influx)
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE_CONFIG, environ={"VIGIL_KAFKA__PARTITIONS": "0"})
    assert [p for p, _ in info.value.problems] == ["kafka.partitions"]


def test_secret_never_appears_in_a_config_error() -> None:
    data = _break(("influx", "password"), "hunter2-secret")
    data["influx"]["batch_size"] = -1
    with pytest.raises(ConfigError) as info:
        load_config(data=data, environ={})
    assert "hunter2-secret" not in str(info.value)
    assert "influx.batch_size" in str(info.value)
