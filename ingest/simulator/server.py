"""The simulator's OPC UA server: a :class:`~ingest.simulator.fleet.Fleet` served over asyncua.

Address space (namespace URI ``urn:vigil:simulator``, endpoint ``opc.tcp://<host>:<port>/vigil/``)::

    Objects/Plant/<machine id>/<sensor>     Double, NodeId ``ns=<idx>;s=<machine id>.<sensor>``,
                                            with an ``EngineeringUnits`` property (the configured unit)

Each fleet step writes every sample with ``SourceTimestamp`` = simulated time, ``ServerTimestamp`` = simulated
time + :data:`SERVER_LATENCY` (so source and server time differ visibly), and the sample's status code: a
Bad-quality dropout is written as NaN with ``BadSensorFailure``; a missing sample is simply not written.
Simulated time runs ``speed`` times faster than real time. Each step's samples and failure/repair events go to ``on_step``
(the CLI hands the events to the Kafka publisher, topic ``topics.maintenance``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager

from ingest.exceptions import SimulatorError
from ingest.simulator.fleet import Fleet
from vigil.contracts import MaintenanceEvent, Reading

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:vigil:simulator"
SERVER_LATENCY = timedelta(milliseconds=100)
"""Simulated delay between a sample's source timestamp and the server's."""

POLICIES = {
    ("None", "None"): ua.SecurityPolicyType.NoSecurity,
    ("Basic256Sha256", "Sign"): ua.SecurityPolicyType.Basic256Sha256_Sign,
    ("Basic256Sha256", "SignAndEncrypt"): ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ("Aes128_Sha256_RsaOaep", "Sign"): ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    ("Aes128_Sha256_RsaOaep", "SignAndEncrypt"): ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ("Aes256_Sha256_RsaPss", "Sign"): ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    ("Aes256_Sha256_RsaPss", "SignAndEncrypt"): ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
}


@dataclass(frozen=True)
class ServerSecurity:
    """Server certificate and the (policy, mode) pairs it offers; ``None``/``None`` only when listed.

    ``users`` (username -> password) turns on username authentication and refuses anonymous sessions.
    """

    certificate: Path
    private_key: Path
    policies: tuple[tuple[str, str], ...] = (("Basic256Sha256", "SignAndEncrypt"),)
    users: dict[str, str] = field(default_factory=dict)


class _PasswordUsers(UserManager):
    """asyncua user manager: only the configured username/password pairs get a session."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


def _node_id(identifier: str, namespace: int) -> ua.NodeId:
    return ua.NodeId(ua.String(identifier), ua.Int16(namespace))


class SimulatorServer:
    """Serves a fleet over OPC UA; ``async with`` starts and stops it, :meth:`run` drives simulated time."""

    def __init__(
        self,
        fleet: Fleet,
        port: int,
        host: str = "127.0.0.1",
        speed: float = 600.0,
        security: ServerSecurity | None = None,
        on_step: Callable[[list[Reading], list[MaintenanceEvent]], None] | None = None,
    ) -> None:
        if speed <= 0:
            raise SimulatorError("speed must be positive")
        self.fleet = fleet
        self.port = port
        self.host = host
        self.speed = speed
        self.security = security
        self.on_step = on_step
        self.steps = 0
        self.written = 0
        self._server: Server | None = None
        self._nodes: dict[tuple[str, str], ua.NodeId] = {}

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/vigil/"

    async def start(self) -> None:
        server = Server(user_manager=_PasswordUsers(self.security.users) if self.security else None)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("Vigil fleet simulator")
        # Not the namespace URI: the server namespace is index 1, ours must be index 2 (``2:Plant`` in configs).
        await server.set_application_uri(f"{NAMESPACE_URI}:server")
        if self.security is not None:
            await server.load_certificate(str(self.security.certificate))
            await server.load_private_key(str(self.security.private_key))
            try:
                server.set_security_policy([POLICIES[p] for p in self.security.policies])
            except KeyError as exc:
                raise SimulatorError(f"unknown security policy/mode {exc.args[0]}") from exc
            if self.security.users:
                server.set_identity_tokens([ua.UserNameIdentityToken])
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NAMESPACE_URI)
        plant = await server.nodes.objects.add_folder(_node_id("Plant", idx), ua.QualifiedName("Plant", idx))
        for machine_id in self.fleet.machine_ids:
            machine = self.fleet.config.machines_by_id[machine_id]
            obj = await plant.add_object(_node_id(machine_id, idx), ua.QualifiedName(machine_id, idx))
            for sensor, spec in machine.sensors.items():
                nodeid = _node_id(f"{machine_id}.{sensor}", idx)
                var = await obj.add_variable(
                    nodeid, ua.QualifiedName(sensor, idx), math.nan, varianttype=ua.VariantType.Double
                )
                units = ua.EUInformation(
                    DisplayName=ua.LocalizedText(spec.unit), Description=ua.LocalizedText(spec.unit)
                )
                await var.add_property(
                    _node_id(f"{machine_id}.{sensor}.EngineeringUnits", idx), "EngineeringUnits", units
                )
                self._nodes[(machine_id, sensor)] = nodeid
        self._server = server
        # The first sample is written before anyone can connect: no client ever sees an uninitialised variable.
        await self.step()
        await server.start()
        log.info("simulator serving %d machines at %s", len(self.fleet.machine_ids), self.endpoint)

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def step(self) -> None:
        """Advance the fleet one sample interval and publish its samples and events."""
        readings, events = self.fleet.step()
        await self.write(readings)
        self.steps += 1
        if self.on_step is not None:
            self.on_step(readings, events)

    async def write(self, readings: list[Reading]) -> None:
        if self._server is None:
            raise SimulatorError("the server is not started")
        for r in readings:
            value = ua.DataValue(
                Value=ua.Variant(math.nan if r.value is None else r.value, ua.VariantType.Double),
                StatusCode=ua.StatusCode(ua.UInt32(r.status_code)),
                SourceTimestamp=cast(ua.DateTime, r.ts),
                ServerTimestamp=cast(ua.DateTime, r.ts + SERVER_LATENCY),
            )
            await self._server.write_attribute_value(self._nodes[(r.machine_id, r.sensor)], value)
        self.written += len(readings)

    async def inject(self, machine_id: str, sensor: str, value: Any, status_code: int, ts: datetime) -> None:
        """Write one raw value of any type to a sensor (fault injection for tests and demos: NaN, strings, ...)."""
        if self._server is None:
            raise SimulatorError("the server is not started")
        variant = value if isinstance(value, ua.Variant) else ua.Variant(value)
        dv = ua.DataValue(
            Value=variant,
            StatusCode=ua.StatusCode(ua.UInt32(status_code)),
            SourceTimestamp=cast(ua.DateTime, ts),
            ServerTimestamp=cast(ua.DateTime, ts + SERVER_LATENCY),
        )
        await self._server.write_attribute_value(self._nodes[(machine_id, sensor)], dv)

    async def drop_subscriptions(self) -> int:
        """Forget every client subscription, keeping the sessions (fault injection: a subscription goes silent)."""
        if self._server is None:
            raise SimulatorError("the server is not started")
        service = self._server.iserver.subscription_service
        ids = list(service.subscriptions)
        await service.delete_subscriptions(ids)
        return len(ids)

    async def run(self, duration_s: float | None = None) -> None:
        """Step until ``duration_s`` of simulated time since the fleet's start is sampled (forever when ``None``),
        paced by ``speed``; the sample :meth:`start` wrote counts."""
        end = None if duration_s is None else self.fleet.start + timedelta(seconds=duration_s)
        real_step = self.fleet.sample_interval_s / self.speed
        t0 = time.monotonic()
        done = 0
        while end is None or self.fleet.now < end:
            step_started = time.monotonic()
            await self.step()
            done += 1
            # Pace against the start, not the previous step, so a slow step does not slow the whole run; but
            # when behind, still leave the event loop a third of the time, or the server's own publishing to
            # its clients starves and they receive almost nothing.
            delay = t0 + done * real_step - time.monotonic()
            await asyncio.sleep(max(delay, (time.monotonic() - step_started) * 0.5))
