"""Which server variables are which (machine, sensor): by NodeId, by browse path, and by pattern.

A pattern names a folder and a glob: every object under the folder whose browse name matches is a machine of
the pattern's type, and its child variables are matched to the type's sensors by browse name. Only machines in
``[[machines]]`` (of that type) are accepted; anything else is counted and logged, never turned into a machine.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.ua.uaerrors import UaError

from ingest.exceptions import MappingError
from vigil.config import OpcUaPattern, OpcUaSource, ResolvedMachine, VigilConfig

log = logging.getLogger(__name__)

_PART = re.compile(r"^(\d+):(.+)$")


@dataclass(frozen=True)
class Binding:
    """One monitored variable and where its values go."""

    machine_id: str
    sensor: str
    nodeid: ua.NodeId
    unit: str
    sampling_interval_ms: float
    deadband: tuple[str, float] | None
    """``("absolute" | "percent", value)`` or ``None``."""


def parse_browse_path(path: str) -> list[str]:
    """``"0:Objects/2:Plant"`` -> ``["0:Objects", "2:Plant"]``; every part needs its namespace index.

    >>> parse_browse_path("0:Objects/2:Plant/2:PMP-001")
    ['0:Objects', '2:Plant', '2:PMP-001']
    >>> parse_browse_path("Objects/Plant")
    Traceback (most recent call last):
    ...
    ingest.exceptions.MappingError: browse path 'Objects/Plant': part 'Objects' is not <namespace index>:<name>
    """
    parts = [p for p in path.strip("/").split("/") if p]
    for part in parts:
        if not _PART.match(part):
            raise MappingError(f"browse path {path!r}: part {part!r} is not <namespace index>:<name>")
    return parts


def match_objects(
    pattern: OpcUaPattern, names: list[str], config: VigilConfig
) -> tuple[dict[str, str], dict[str, str]]:
    """Split object browse names into accepted (name -> machine id) and rejected (name -> reason).

    Names that do not match the glob are neither: they are simply not this pattern's business.
    """
    accepted: dict[str, str] = {}
    rejected: dict[str, str] = {}
    machines = config.machines_by_id
    for name in names:
        if not fnmatch.fnmatchcase(name, pattern.glob):
            continue
        machine_id = pattern.id_template.format(name=name)
        machine = machines.get(machine_id)
        if machine is None:
            rejected[name] = "unknown_machine"
        elif machine.type != pattern.machine_type:
            rejected[name] = "type_mismatch"
        else:
            accepted[name] = machine_id
    return accepted, rejected


def match_sensors(
    pattern: OpcUaPattern, machine: ResolvedMachine, names: list[str]
) -> tuple[dict[str, str], list[str]]:
    """Split a machine object's variable browse names into sensors (name -> sensor) and unknown names."""
    sensors: dict[str, str] = {}
    unknown: list[str] = []
    for name in names:
        sensor = pattern.sensor_names.get(name, name)
        if sensor in machine.sensors:
            sensors[name] = sensor
        else:
            unknown.append(name)
    return sensors, unknown


def _deadband(
    source: OpcUaSource, absolute: float | None = None, percent: float | None = None
) -> tuple[str, float] | None:
    if absolute is not None:
        return ("absolute", absolute)
    if percent is not None:
        return ("percent", percent)
    if source.deadband == "none":
        return None
    return (source.deadband, source.deadband_value)


class Resolver:
    """Resolves a source's nodes and patterns on a connected client into :class:`Binding` s.

    ``counters`` receives ``unknown_machine``, ``type_mismatch``, ``unknown_sensor`` and ``missing_node``;
    each distinct rejection is logged once.
    """

    def __init__(self, source: OpcUaSource, config: VigilConfig, counters: Counter[str]) -> None:
        self.source = source
        self.config = config
        self.counters = counters
        self._logged: set[tuple[str, str]] = set()

    def _reject(self, reason: str, what: str) -> None:
        self.counters[reason] += 1
        if (reason, what) not in self._logged:
            self._logged.add((reason, what))
            log.warning("opcua %s: ignored %s (%s); no machine or sensor is created", self.source.name, what, reason)

    async def resolve(self, client: Any) -> list[Binding]:
        bindings: list[Binding] = []
        machines = self.config.machines_by_id
        for node in self.source.nodes:
            spec = machines[node.machine].sensors[node.sensor]
            try:
                if node.node_id is not None:
                    nodeid = ua.NodeId.from_string(node.node_id)
                else:
                    nodeid = (await client.nodes.root.get_child(parse_browse_path(node.browse_path or ""))).nodeid
            except UaError as exc:
                self._reject("missing_node", f"{node.node_id or node.browse_path}: {exc}")
                continue
            bindings.append(
                Binding(
                    node.machine,
                    node.sensor,
                    nodeid,
                    spec.unit,
                    node.sampling_interval_ms
                    if node.sampling_interval_ms is not None
                    else self.source.sampling_interval_ms,
                    _deadband(self.source, node.deadband_abs, node.deadband_pct),
                )
            )
        for pattern in self.source.patterns:
            bindings.extend(await self._resolve_pattern(client, pattern))
        # One binding per (machine, sensor): an explicit node wins over a pattern match.
        unique: dict[tuple[str, str], Binding] = {}
        for b in bindings:
            unique.setdefault((b.machine_id, b.sensor), b)
        return list(unique.values())

    async def _resolve_pattern(self, client: Any, pattern: OpcUaPattern) -> list[Binding]:
        try:
            folder = await client.nodes.root.get_child(parse_browse_path(pattern.folder))
        except UaError as exc:
            self._reject("missing_node", f"folder {pattern.folder}: {exc}")
            return []
        objects = {
            d.BrowseName.Name: d.NodeId
            for d in await folder.get_children_descriptions()
            if d.NodeClass == ua.NodeClass.Object
        }
        accepted, rejected = match_objects(pattern, sorted(objects), self.config)
        for name, reason in rejected.items():
            self._reject(reason, f"object {pattern.folder}/{name}")
        out: list[Binding] = []
        for name, machine_id in accepted.items():
            machine = self.config.machines_by_id[machine_id]
            variables = {
                d.BrowseName.Name: d.NodeId
                for d in await client.get_node(objects[name]).get_children_descriptions()
                if d.NodeClass == ua.NodeClass.Variable
            }
            sensors, unknown = match_sensors(pattern, machine, sorted(variables))
            for var in unknown:
                self._reject("unknown_sensor", f"variable {name}/{var}")
            for var, sensor in sensors.items():
                out.append(
                    Binding(
                        machine_id,
                        sensor,
                        variables[var],
                        machine.sensors[sensor].unit,
                        self.source.sampling_interval_ms,
                        _deadband(self.source),
                    )
                )
        return out
