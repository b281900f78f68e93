"""Which server variables are which (machine, sensor): by NodeId, by browse path, and by pattern.

A pattern names a folder and a glob: every object under the folder whose browse name matches is a machine of
the pattern's type, and its child variables are matched to the type's sensors by browse name. Only machines in
``[[machines]]`` (of that type) are accepted; anything else is counted and logged, never turned into a machine.

Namespaces are named by index (``ns=2;s=...``, ``2:Plant``) or by URI (``nsu=urn:vigil:simulator;s=...``,
``nsu=urn:vigil:simulator;Plant``); a URI is looked up in the server's namespace array on every connection, so a
server that numbers its namespaces differently still maps. A node, folder or namespace that does not resolve is
logged with its status code's name; a pattern that matches no machine is a warning.
"""

from __future__ import annotations

import fnmatch
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from ingest.exceptions import MappingError
from vigil.config import OpcUaPattern, OpcUaSource, ResolvedMachine, VigilConfig
from vigil.config.sources import split_browse_path

log = logging.getLogger(__name__)


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
    address: str = ""
    """How the configuration named it (node id or browse path), for messages."""


def parse_browse_path(path: str) -> list[tuple[int | str, str]]:
    """``"0:Objects/2:Plant"`` -> ``[(0, "Objects"), (2, "Plant")]``; every part needs its namespace (index or URI).

    >>> parse_browse_path("0:Objects/nsu=urn:vigil:simulator;Plant")
    [(0, 'Objects'), ('urn:vigil:simulator', 'Plant')]
    >>> parse_browse_path("Objects/Plant")
    Traceback (most recent call last):
    ...
    ingest.exceptions.MappingError: browse path 'Objects/Plant': part 'Objects' is not <namespace index>:<name> or nsu=<namespace uri>;<name> (e.g. 0:Objects)
    """
    try:
        return split_browse_path(path)
    except ValueError as exc:
        raise MappingError(str(exc)) from exc


def status_name(exc: BaseException) -> str:
    """An asyncua error as its status code's name (``BadNodeIdUnknown``), else its text."""
    if isinstance(exc, UaStatusCodeError):
        return ua.StatusCode(exc.code).name
    return str(exc) or type(exc).__name__


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
        self._namespaces: list[str] | None = None

    def _reject(self, reason: str, what: str) -> None:
        self.counters[reason] += 1
        if (reason, what) not in self._logged:
            self._logged.add((reason, what))
            log.warning("opcua %s: ignored %s (%s); no machine or sensor is created", self.source.name, what, reason)

    async def _namespace(self, client: Any, ns: int | str) -> int:
        if isinstance(ns, int):
            return ns
        if self._namespaces is None:
            self._namespaces = list(await client.get_namespace_array())
        if ns not in self._namespaces:
            raise MappingError(f"the server has no namespace {ns!r} (it has: {', '.join(self._namespaces)})")
        return self._namespaces.index(ns)

    async def node_id(self, client: Any, text: str) -> ua.NodeId:
        """A configured NodeId string, its ``nsu=`` URI turned into this server's namespace index."""
        parsed = ua.NodeId.from_string(text)
        uri = getattr(parsed, "NamespaceUri", None)
        if not uri:
            return parsed
        return ua.NodeId(parsed.Identifier, ua.Int16(await self._namespace(client, uri)), parsed.NodeIdType)

    async def browse(self, client: Any, path: str) -> Any:
        """The node at a configured browse path (namespace URIs resolved)."""
        names = [ua.QualifiedName(name, await self._namespace(client, ns)) for ns, name in parse_browse_path(path)]
        return await client.nodes.root.get_child(names)

    async def resolve(self, client: Any) -> list[Binding]:
        self._namespaces = None  # a restarted server may number its namespaces differently
        bindings: list[Binding] = []
        machines = self.config.machines_by_id
        for node in self.source.nodes:
            spec = machines[node.machine].sensors[node.sensor]
            address = node.node_id or node.browse_path or ""
            try:
                if node.node_id is not None:
                    nodeid = await self.node_id(client, node.node_id)
                else:
                    nodeid = (await self.browse(client, address)).nodeid
            except (UaError, MappingError) as exc:
                self._reject("missing_node", f"{node.machine}/{node.sensor} at {address}: {status_name(exc)}")
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
                    address,
                )
            )
        for pattern in self.source.patterns:
            found = await self._resolve_pattern(client, pattern)
            if not found:
                self.counters["pattern_empty"] += 1
                log.warning(
                    "opcua %s: pattern %s/%s (machine type %s) matches no configured machine's variables",
                    self.source.name,
                    pattern.folder,
                    pattern.glob,
                    pattern.machine_type,
                )
            bindings.extend(found)
        # One binding per (machine, sensor): an explicit node wins over a pattern match.
        unique: dict[tuple[str, str], Binding] = {}
        for b in bindings:
            unique.setdefault((b.machine_id, b.sensor), b)
        return list(unique.values())

    async def _resolve_pattern(self, client: Any, pattern: OpcUaPattern) -> list[Binding]:
        try:
            folder = await self.browse(client, pattern.folder)
        except (UaError, MappingError) as exc:
            self._reject("missing_node", f"folder {pattern.folder}: {status_name(exc)}")
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
                        f"{pattern.folder}/{name}/{var}",
                    )
                )
        return out
