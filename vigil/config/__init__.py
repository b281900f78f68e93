"""The plant configuration: one TOML file, validated at start-up, overridable from the environment.

Every entry point calls :func:`load_config` once in ``main()`` and passes plain values down; library code never
reads the environment. A bad file is refused with every problem's key path and reason::

    invalid configuration plant.toml (1 problem(s)):
      machines[3].sensors.bearing_temp.range: min 90 > max 80

Environment variables override the file with the prefix ``VIGIL_`` and ``__`` between levels, for example
``VIGIL_KAFKA__BOOTSTRAP_SERVERS`` or ``VIGIL_INFLUX__PASSWORD`` (secrets belong there, not in the file).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Self

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from vigil.config.alerting import AlertConfig, ChatReceiver, EmailReceiver, Route, WebhookReceiver
from vigil.config.connections import InfluxSettings, KafkaSettings, MqttSettings, Topics
from vigil.config.ingest import PublishSettings, SpoolSettings
from vigil.config.modeling import ModelConfig
from vigil.config.plant import (
    DerivedFeature,
    Limits,
    Line,
    Machine,
    MachineType,
    Range,
    ResolvedMachine,
    SensorOverride,
    SensorSpec,
    Site,
)
from vigil.config.sources import (
    ModbusGroup,
    ModbusRegister,
    ModbusSource,
    MqttMapping,
    MqttSource,
    OpcUaNode,
    OpcUaPattern,
    OpcUaSecurity,
    OpcUaSource,
    Sources,
    SparkplugSource,
)
from vigil.config.windows import WindowConfig
from vigil.exceptions import ConfigError

__all__ = [
    "AlertConfig",
    "ChatReceiver",
    "DerivedFeature",
    "EmailReceiver",
    "InfluxSettings",
    "KafkaSettings",
    "Limits",
    "Line",
    "Machine",
    "MachineType",
    "ModbusGroup",
    "ModbusRegister",
    "ModbusSource",
    "ModelConfig",
    "MqttMapping",
    "MqttSettings",
    "MqttSource",
    "OpcUaNode",
    "OpcUaPattern",
    "OpcUaSecurity",
    "OpcUaSource",
    "PublishSettings",
    "Range",
    "ResolvedMachine",
    "Route",
    "SensorOverride",
    "SensorSpec",
    "Site",
    "Sources",
    "SparkplugSource",
    "SpoolSettings",
    "Topics",
    "VigilConfig",
    "WebhookReceiver",
    "WindowConfig",
    "format_loc",
    "load_config",
]

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "plant.example.toml"


class VigilConfig(BaseSettings):
    """The whole configuration of a Vigil deployment."""

    model_config = SettingsConfigDict(
        env_prefix="VIGIL_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    plant: str = "plant"
    sites: list[Site] = Field(min_length=1)
    lines: list[Line] = Field(min_length=1)
    machine_types: dict[str, MachineType] = Field(min_length=1)
    machines: list[Machine] = Field(min_length=1)
    sources: Sources = Sources()
    kafka: KafkaSettings = KafkaSettings()
    topics: Topics = Topics()
    influx: InfluxSettings = InfluxSettings()
    mqtt: MqttSettings = MqttSettings()
    spool: SpoolSettings = SpoolSettings()
    publish: PublishSettings = PublishSettings()
    windows: WindowConfig = WindowConfig()
    models: ModelConfig = ModelConfig()
    alerts: AlertConfig = AlertConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (the file arrives as init kwargs).
        return env_settings, init_settings

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; what is derived from the plant (``machines_by_id``) is derived again, not copied stale."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("machines_by_id", None)
        return copy

    @cached_property
    def machines_by_id(self) -> dict[str, ResolvedMachine]:
        """Every machine with its type's sensors merged with its overrides, and its site."""
        line_site = {line.id: line.site for line in self.lines}
        out: dict[str, ResolvedMachine] = {}
        for m in self.machines:
            sensors = dict(self.machine_types[m.type].sensors)
            for name, override in m.sensors.items():
                changes = override.model_dump(exclude_none=True)
                sensors[name] = sensors[name].model_copy(update={k: getattr(override, k) for k in changes})
            out[m.id] = ResolvedMachine(id=m.id, type=m.type, line=m.line, site=line_site[m.line], sensors=sensors)
        return out

    def reference_problems(self) -> list[tuple[str, str]]:
        """Cross-references a field validator cannot see: unknown types, lines, sites, sensors, receivers."""
        problems: list[tuple[str, str]] = []
        site_ids = [s.id for s in self.sites]
        line_ids = [line.id for line in self.lines]
        problems += _duplicates("sites", site_ids)
        problems += _duplicates("lines", line_ids)
        problems += _duplicates("machines", [m.id for m in self.machines])
        for i, line in enumerate(self.lines):
            if line.site not in site_ids:
                problems.append((f"lines[{i}].site", f"unknown site {line.site!r} (known: {', '.join(site_ids)})"))
        for i, m in enumerate(self.machines):
            if m.type not in self.machine_types:
                types = ", ".join(self.machine_types)
                problems.append((f"machines[{i}].type", f"unknown machine type {m.type!r} (known: {types})"))
                continue
            if m.line not in line_ids:
                problems.append((f"machines[{i}].line", f"unknown line {m.line!r} (known: {', '.join(line_ids)})"))
            type_sensors = self.machine_types[m.type].sensors
            for name in m.sensors:
                if name not in type_sensors:
                    problems.append(
                        (f"machines[{i}].sensors.{name}", f"machine type {m.type!r} has no sensor {name!r}")
                    )
                    continue
        machine_types = {m.id: m.type for m in self.machines}
        for s, src in enumerate(self.sources.opcua):
            for n, node in enumerate(src.nodes):
                where = f"sources.opcua[{s}].nodes[{n}]"
                if node.machine not in machine_types:
                    problems.append((f"{where}.machine", f"unknown machine {node.machine!r}"))
                elif node.sensor not in self.machine_types[machine_types[node.machine]].sensors:
                    problems.append((f"{where}.sensor", f"machine {node.machine!r} has no sensor {node.sensor!r}"))
            for p, pattern in enumerate(src.patterns):
                if pattern.machine_type not in self.machine_types:
                    problems.append(
                        (
                            f"sources.opcua[{s}].patterns[{p}].machine_type",
                            f"unknown machine type {pattern.machine_type!r}",
                        )
                    )
        problems += _duplicates("sources.opcua", [src.name for src in self.sources.opcua])
        for s, msrc in enumerate(self.sources.modbus):
            for g, group in enumerate(msrc.groups):
                for r, reg in enumerate(group.registers):
                    where = f"sources.modbus[{s}].groups[{g}].registers[{r}]"
                    if reg.machine not in machine_types:
                        problems.append((f"{where}.machine", f"unknown machine {reg.machine!r}"))
                    elif reg.sensor not in self.machine_types[machine_types[reg.machine]].sensors:
                        problems.append((f"{where}.sensor", f"machine {reg.machine!r} has no sensor {reg.sensor!r}"))
        problems += _duplicates("sources.modbus", [src.name for src in self.sources.modbus])
        problems += self._mapped_machines(machine_types)
        receivers = [r.name for r in self.alerts.receivers]
        problems += _duplicates("alerts.receivers", receivers)
        for r, route in enumerate(self.alerts.routes):
            if route.receiver not in receivers:
                problems.append((f"alerts.routes[{r}].receiver", f"unknown receiver {route.receiver!r}"))
            if route.escalate_to is not None and route.escalate_to not in receivers:
                problems.append((f"alerts.routes[{r}].escalate_to", f"unknown receiver {route.escalate_to!r}"))
            for key, known in (
                ("sites", site_ids),
                ("lines", line_ids),
                ("machine_types", list(self.machine_types)),
            ):
                for value in getattr(route, key):
                    if value not in known:
                        problems.append(
                            (f"alerts.routes[{r}].{key}", f"unknown {key[:-1].replace('_', ' ')} {value!r}")
                        )
        return problems

    def _mapped_machines(self, machine_types: dict[str, str]) -> list[tuple[str, str]]:
        """Mappings of files, foreign topics and MQTT name machines and sensors that exist (checked at start-up)."""
        problems: list[tuple[str, str]] = []
        for kind in ("file", "kafka", "mqtt"):
            sources = getattr(self.sources, kind)
            problems += _duplicates(f"sources.{kind}", [src.name for src in sources])
            for s, src in enumerate(sources):
                where = f"sources.{kind}[{s}].mapping"
                for tag, spec in src.mapping.tags.items():
                    if spec.machine not in machine_types:
                        problems.append((f"{where}.tags.{tag}.machine", f"unknown machine {spec.machine!r}"))
                    elif spec.sensor not in self.machine_types[machine_types[spec.machine]].sensors:
                        problems.append(
                            (f"{where}.tags.{tag}.sensor", f"machine {spec.machine!r} has no sensor {spec.sensor!r}")
                        )
                for name, machine in src.mapping.machines.items():
                    if machine not in machine_types:
                        problems.append((f"{where}.machines.{name}", f"unknown machine {machine!r}"))
        problems += _duplicates("sources.maintenance", [src.name for src in self.sources.maintenance])
        for s, msrc in enumerate(self.sources.maintenance):
            for name, machine in msrc.mapping.machines.items():
                if machine not in machine_types:
                    problems.append(
                        (f"sources.maintenance[{s}].mapping.machines.{name}", f"unknown machine {machine!r}")
                    )
        return problems


def _duplicates(path: str, ids: list[str]) -> list[tuple[str, str]]:
    seen: dict[str, int] = {}
    problems = []
    for i, ident in enumerate(ids):
        if ident in seen:
            problems.append((f"{path}[{i}]", f"duplicate id {ident!r} (first at {path}[{seen[ident]}])"))
        seen.setdefault(ident, i)
    return problems


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``('machines', 3, 'sensors', 'bearing_temp', 'range')`` -> ``machines[3].sensors.bearing_temp.range``.

    >>> format_loc(("machines", 3, "sensors", "bearing_temp", "range"))
    'machines[3].sensors.bearing_temp.range'
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-after[", "function-before[", "tagged-union[")) or part in (
            "WebhookReceiver",
            "ChatReceiver",
            "EmailReceiver",
        ):
            continue  # pydantic's internal validator/union names say nothing to a data engineer
        else:
            out += f".{part}" if out else part
    return out


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        out.append((format_loc(err["loc"]) or "(top level)", msg))
    return out


def load_config(
    path: str | Path | None = None,
    *,
    data: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> VigilConfig:
    """Read, validate and cross-check the configuration; raise :class:`ConfigError` naming every bad key.

    ``path`` defaults to ``$VIGIL_CONFIG`` and then the example plant. ``data`` (tests) replaces the file.
    ``environ`` defaults to ``os.environ``; only ``VIGIL_``-prefixed variables are read.
    """
    source = "configuration"
    if data is None:
        env_path = (environ if environ is not None else os.environ).get("VIGIL_CONFIG")
        file = Path(path or env_path or EXAMPLE_CONFIG)
        source = f"configuration {file}"
        try:
            data = tomllib.loads(file.read_text())
        except FileNotFoundError as exc:
            raise ConfigError([("(file)", f"no such file: {file}")], source) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([("(file)", f"not valid TOML: {exc}")], source) from exc
    data = dict(data)
    data.pop("VIGIL_CONFIG", None)
    try:
        if environ is not None:
            saved = {k: v for k, v in os.environ.items() if k.startswith("VIGIL_")}
            for k in saved:
                del os.environ[k]
            os.environ.update({k: v for k, v in environ.items() if k.startswith("VIGIL_") and k != "VIGIL_CONFIG"})
            try:
                config = VigilConfig(**data)
            finally:
                for k in [k for k in os.environ if k.startswith("VIGIL_")]:
                    del os.environ[k]
                os.environ.update(saved)
        else:
            config = VigilConfig(**data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc), source) from exc
    problems = config.reference_problems()
    if problems:
        raise ConfigError(problems, source)
    # Every secret of the configuration is masked in logs from now on, even when a library quotes it.
    from vigil.logs import protect_secrets

    protect_secrets(config)
    return config


def main(argv: list[str]) -> int:
    """``vigil config [check] [FILE]``: validate and summarise a plant configuration."""
    import sys

    args: list[str] = [a for a in argv if a != "check"]
    if args and args[0] in ("-h", "--help"):
        print("usage: vigil config [check] [FILE]   (default: $VIGIL_CONFIG, then config/plant.example.toml)")  # noqa: T201
        return 0
    try:
        config = load_config(args[0] if args else None)
    except ConfigError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return 1
    by_type: dict[str, int] = {}
    for m in config.machines:
        by_type[m.type] = by_type.get(m.type, 0) + 1
    print(  # noqa: T201
        f"ok: plant {config.plant!r}: {len(config.sites)} site(s), {len(config.lines)} line(s), "
        f"{len(config.machines)} machine(s) ({', '.join(f'{n} {t}' for t, n in by_type.items())}), "
        f"{len(config.sources.opcua)} OPC UA source(s), {len(config.sources.mqtt)} MQTT source(s); "
        f"kafka {config.kafka.bootstrap_servers}, influx {config.influx.url} ({config.influx.api})"
    )
    return 0
