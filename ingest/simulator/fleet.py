"""A pure, seeded model of a degrading fleet: pumps, motors and compressors that wear out, fail and get repaired.

No I/O and no asyncio: :class:`Fleet` advances simulated time one sample interval per :meth:`Fleet.step` and
returns the readings sampled at that instant plus any maintenance events (failures, repairs) that happened.
The OPC UA server (:mod:`ingest.simulator.server`) and the tests drive it; the models engineer can use it
directly to generate labelled histories.

API::

    fleet = Fleet(config, seed=7, start=datetime(2026, 1, 1, tzinfo=UTC), sample_interval_s=10.0)
    readings, events = fleet.step()             # samples at fleet.now, then advances now by one interval
    for readings, events in fleet.run(86400):   # one simulated day, step by step
        ...
    fleet.health("PMP-001")                     # ground truth: state, failure mode, damage, failure time

What is simulated (per machine, each from its own random stream ``seed:machine id``, so adding a machine never
changes the others):

- **Physics.** Each type's sensors follow its load ``s`` (0.6-1.0) and the ambient temperature (daily cycle):
  flow ~ s, pressure ~ s², current ~ s³ (pump), temperatures lag their target with a time constant (warm-up
  after a start, cool-down after a stop), vibration rises with s² and briefly after a start. Gaussian noise.
- **Operating regimes.** Load steps every ~3 h; machine-off periods of 1-6 h (speed 0, no flow/current,
  temperatures cooling towards ambient).
- **Degradation and failure.** One failure mode at a time develops over its duration D (mode-specific, e.g.
  bearing wear 1-4 days, cooling failure 0.75-1.5 days) with damage ``d = (exp(3.5 x) - 1) / (exp(3.5) - 1)``,
  ``x`` the elapsed share of D. The mode's sensors drift by ``d`` times their effect, which is calibrated from
  the configured hard limit so that at full load the limit is reached at ``d ~ 0.88``: the trend is visible
  for hours to days, while ``limits.high`` is typically crossed only in the last ~1-4 h, or not at all at part
  load. At ``d = 1`` the machine fails (:class:`MaintenanceEvent` ``failure`` with ``failure_mode``), stays down
  for 4-16 h, and a ``repair`` event resets its health.
- **Sensor faults (not failures).** Stuck values (20 min-3 h, quality still Good), single spikes, and dropouts
  (5 min-1 h) that either produce no samples or Bad-quality samples (``BadSensorFailure``, value ``None``).

With the example configuration (12 machines) a simulated week holds about 6-15 failures; ``failure_rate``
scales how often failures start (2.0 = twice as many).

>>> from datetime import UTC, datetime
>>> from vigil.config import load_config
>>> fleet = Fleet(load_config(), seed=7, start=datetime(2026, 1, 1, tzinfo=UTC))
>>> readings, events = fleet.step()
>>> len(readings) > 50, readings[0].machine_id, fleet.now.isoformat()
(True, 'PMP-001', '2026-01-01T00:00:10+00:00')
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from ingest.exceptions import SimulatorError
from vigil.config import ResolvedMachine, SensorSpec, VigilConfig
from vigil.contracts import MaintenanceEvent, MaintenanceKind, Quality, Reading

HOUR = 3600.0
DAY = 86400.0
LIMIT_AT_DAMAGE = 0.88
"""Damage at which a mode's primary sensor reaches its hard limit at full load and nominal ambient."""
CURVE = 3.5
"""Steepness of the damage curve: larger = flatter for longer, then a steeper end."""
NOMINAL_AMBIENT = 25.0
FAULT_MEAN_S = 20 * HOUR
"""Mean time between sensor faults (stuck, spike, dropout) per machine."""

BAD_SENSOR_FAILURE = 0x808C0000
"""OPC UA ``BadSensorFailure``: what a dropout reports when the sensor answers but has no value."""

MachineStatus = Literal["running", "off", "down"]
_READING_FIELDS = set(Reading.model_fields)


# ---------------------------------------------------------------------------------------------- type templates
@dataclass(frozen=True)
class Effect:
    """How a failure mode moves one sensor: ``limit`` = share of the gap to the hard limit (1.0 reaches it at
    :data:`LIMIT_AT_DAMAGE`), ``rel`` = relative change of the healthy value at full damage (-0.3 = 30 % less)."""

    sensor: str
    kind: Literal["limit", "rel"]
    size: float


@dataclass(frozen=True)
class FailureMode:
    name: str
    min_days: float
    max_days: float
    weight: float
    effects: tuple[Effect, ...]


@dataclass(frozen=True)
class Physics:
    """Healthy steady-state values of one machine type as a function of load ``s`` and ambient ``a``."""

    running: Callable[[float, float], dict[str, float]]
    off: Callable[[float], dict[str, float]]
    time_constants_s: dict[str, float]
    """Sensors that lag their target (temperatures), with their first-order time constant."""
    noise: dict[str, tuple[Literal["abs", "rel"], float]]
    modes: tuple[FailureMode, ...]


def _pump(s: float, a: float) -> dict[str, float]:
    return {
        "speed": 2960.0 * s,
        "flow": 430.0 * s,
        "pressure": 0.4 + 9.0 * s * s,
        "motor_current": 22.0 + 108.0 * s**3,
        "bearing_temp": a + 8.0 + 27.0 * s,
        "vibration_rms": 0.5 + 1.9 * s * s,
    }


def _pump_off(a: float) -> dict[str, float]:
    return {"speed": 0.0, "flow": 0.0, "pressure": 0.4, "motor_current": 0.0, "bearing_temp": a, "vibration_rms": 0.05}


def _motor(s: float, a: float) -> dict[str, float]:
    return {
        "speed": 2970.0 * s,
        "current": 55.0 + 175.0 * s,
        "winding_temp": a + 15.0 + 60.0 * s**1.5,
        "bearing_temp": a + 10.0 + 30.0 * s,
        "vibration_rms": 0.4 + 1.3 * s * s,
    }


def _motor_off(a: float) -> dict[str, float]:
    return {"speed": 0.0, "current": 0.0, "winding_temp": a, "bearing_temp": a, "vibration_rms": 0.05}


def _compressor(s: float, a: float) -> dict[str, float]:
    return {
        "speed": 3560.0 * s,
        "discharge_pressure": 7.2 + 0.8 * s,
        "discharge_temp": a + 40.0 + 15.0 * s,
        "oil_temp": a + 30.0 + 12.0 * s,
        "vibration_rms": 0.7 + 2.1 * s * s,
        "motor_current": 70.0 + 180.0 * s,
    }


def _compressor_off(a: float) -> dict[str, float]:
    return {
        "speed": 0.0,
        "discharge_pressure": 0.2,
        "discharge_temp": a,
        "oil_temp": a,
        "vibration_rms": 0.05,
        "motor_current": 0.0,
    }


_COMMON_NOISE: dict[str, tuple[Literal["abs", "rel"], float]] = {
    "speed": ("abs", 2.0),
    "flow": ("rel", 0.015),
    "pressure": ("rel", 0.01),
    "discharge_pressure": ("rel", 0.008),
    "motor_current": ("rel", 0.012),
    "current": ("rel", 0.012),
    "bearing_temp": ("abs", 0.25),
    "winding_temp": ("abs", 0.3),
    "oil_temp": ("abs", 0.25),
    "discharge_temp": ("abs", 0.3),
    "vibration_rms": ("rel", 0.03),
}

TEMPLATES: dict[str, Physics] = {
    "pump": Physics(
        running=_pump,
        off=_pump_off,
        time_constants_s={"bearing_temp": 20 * 60.0},
        noise=_COMMON_NOISE,
        modes=(
            FailureMode(
                "bearing_wear",
                1.0,
                4.0,
                0.55,
                (
                    Effect("vibration_rms", "limit", 1.0),
                    Effect("bearing_temp", "limit", 0.95),
                    Effect("motor_current", "rel", 0.04),
                ),
            ),
            FailureMode(
                "impeller_wear",
                2.0,
                5.0,
                0.45,
                (
                    Effect("flow", "rel", -0.30),
                    Effect("pressure", "rel", -0.25),
                    Effect("motor_current", "limit", 1.0),
                    Effect("vibration_rms", "limit", 0.25),
                ),
            ),
        ),
    ),
    "motor": Physics(
        running=_motor,
        off=_motor_off,
        time_constants_s={"winding_temp": 30 * 60.0, "bearing_temp": 20 * 60.0},
        noise=_COMMON_NOISE,
        modes=(
            FailureMode(
                "bearing_wear",
                1.0,
                4.0,
                0.4,
                (
                    Effect("vibration_rms", "limit", 1.0),
                    Effect("bearing_temp", "limit", 0.95),
                    Effect("current", "rel", 0.03),
                ),
            ),
            FailureMode(
                "cooling_failure",
                0.75,
                1.5,
                0.35,
                (
                    Effect("winding_temp", "limit", 1.0),
                    Effect("bearing_temp", "limit", 0.3),
                    Effect("current", "rel", 0.05),
                ),
            ),
            FailureMode(
                "rotor_imbalance",
                1.0,
                3.0,
                0.25,
                (Effect("vibration_rms", "limit", 0.9), Effect("current", "rel", 0.02)),
            ),
        ),
    ),
    "compressor": Physics(
        running=_compressor,
        off=_compressor_off,
        time_constants_s={"discharge_temp": 8 * 60.0, "oil_temp": 25 * 60.0},
        noise=_COMMON_NOISE,
        modes=(
            FailureMode(
                "cooler_fouling",
                1.5,
                4.0,
                0.4,
                (
                    Effect("discharge_temp", "limit", 1.0),
                    Effect("oil_temp", "limit", 0.8),
                    Effect("motor_current", "rel", 0.04),
                ),
            ),
            FailureMode(
                "bearing_wear",
                1.0,
                3.0,
                0.35,
                (Effect("vibration_rms", "limit", 1.0), Effect("oil_temp", "limit", 0.3)),
            ),
            FailureMode(
                "valve_wear",
                1.0,
                3.0,
                0.25,
                (
                    Effect("discharge_pressure", "rel", -0.15),
                    Effect("discharge_temp", "limit", 0.5),
                    Effect("motor_current", "limit", 0.95),
                ),
            ),
        ),
    ),
}


def damage_at(x: float) -> float:
    """Damage (0..1) after the share ``x`` (0..1) of a failure mode's development time.

    >>> round(damage_at(0.5), 3), round(damage_at(0.9), 3), damage_at(1.0)
    (0.148, 0.695, 1.0)
    """
    x = min(max(x, 0.0), 1.0)
    return (math.exp(CURVE * x) - 1.0) / (math.exp(CURVE) - 1.0)


# ---------------------------------------------------------------------------------------------- per machine state
@dataclass(frozen=True)
class MachineHealth:
    """Ground truth about one machine at the fleet's current time (for tests and evaluation)."""

    machine_id: str
    status: MachineStatus
    failure_mode: str | None
    """The mode developing now (``None`` while the machine is down)."""
    damage: float
    degradation_start: datetime | None
    failure_at: datetime | None
    repair_at: datetime | None
    load: float


@dataclass
class _Fault:
    kind: Literal["stuck", "dropout_missing", "dropout_bad"]
    sensor: str
    until: float
    value: float | None = None


@dataclass
class _MachineState:
    machine: ResolvedMachine
    physics: Physics
    rng: random.Random
    ambient_offset: float
    effects: dict[str, list[tuple[str, Effect, float]]] = field(default_factory=dict)
    status: MachineStatus = "running"
    load: float = 1.0
    regime_until: float = 0.0
    started_at: float = -1e9
    mode: FailureMode | None = None
    degrade_from: float = 0.0
    fail_at: float = 0.0
    repair_at: float = 0.0
    lagged: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    fault: _Fault | None = None
    spike: str | None = None
    next_fault_at: float = 0.0
    events: int = 0

    def damage(self, t: float) -> float:
        if self.status == "down" or self.mode is None:
            return 0.0
        span = self.fail_at - self.degrade_from
        return damage_at((t - self.degrade_from) / span) if span > 0 else 1.0


class Fleet:
    """A deterministic fleet of degrading machines (see the module docstring).

    ``config`` gives the machines, their types' sensors (units, ranges, hard limits, per-machine overrides);
    ``seed`` makes every run with the same arguments identical; ``start`` (aware) is the first sample's time.
    """

    def __init__(
        self,
        config: VigilConfig,
        seed: int,
        start: datetime,
        sample_interval_s: float = 10.0,
        *,
        failure_rate: float = 1.0,
        machines: list[str] | None = None,
    ) -> None:
        if start.tzinfo is None:
            raise SimulatorError("start must be a timezone-aware datetime")
        if sample_interval_s <= 0 or failure_rate <= 0:
            raise SimulatorError("sample_interval_s and failure_rate must be positive")
        self.config = config
        self.seed = seed
        self.start = start.astimezone(UTC)
        self.sample_interval_s = sample_interval_s
        self.failure_rate = failure_rate
        self.machines = machines
        self._steps = 0
        self._states = [self._init_machine(m) for m in self._selected(config, machines)]

    # ------------------------------------------------------------------------------------------ public API
    @property
    def now(self) -> datetime:
        """Time of the next sample."""
        return self._time(self._t)

    @property
    def machine_ids(self) -> list[str]:
        return [s.machine.id for s in self._states]

    def health(self, machine_id: str) -> MachineHealth:
        state = self._state(machine_id)
        t = self._t
        down = state.status == "down"
        return MachineHealth(
            machine_id=machine_id,
            status=state.status,
            failure_mode=None if down or state.mode is None else state.mode.name,
            damage=state.damage(t),
            degradation_start=None if down else self._time(state.degrade_from),
            failure_at=None if down else self._time(state.fail_at),
            repair_at=self._time(state.repair_at) if down else None,
            load=state.load if state.status == "running" else 0.0,
        )

    def step(self) -> tuple[list[Reading], list[MaintenanceEvent]]:
        """Sample every machine at :attr:`now`, then advance by one sample interval."""
        t = self._t
        ts = self.now
        readings: list[Reading] = []
        events: list[MaintenanceEvent] = []
        for state in self._states:
            events.extend(self._advance(state, t, ts))
            readings.extend(self._sample(state, t, ts))
        self._steps += 1
        return readings, events

    def run(self, duration_s: float) -> Iterator[tuple[list[Reading], list[MaintenanceEvent]]]:
        """Step through ``duration_s`` of simulated time."""
        for _ in range(math.ceil(duration_s / self.sample_interval_s)):
            yield self.step()

    # ------------------------------------------------------------------------------------------ set-up
    @staticmethod
    def _selected(config: VigilConfig, machines: list[str] | None) -> list[ResolvedMachine]:
        by_id = config.machines_by_id
        if machines is None:
            return list(by_id.values())
        unknown = [m for m in machines if m not in by_id]
        if unknown:
            raise SimulatorError(f"machines not in the configuration: {', '.join(unknown)}")
        return [by_id[m] for m in machines]

    def _init_machine(self, machine: ResolvedMachine) -> _MachineState:
        physics = TEMPLATES.get(machine.type)
        if physics is None:
            raise SimulatorError(
                f"machine {machine.id}: the simulator has no model of machine type {machine.type!r} "
                f"(known: {', '.join(TEMPLATES)})"
            )
        rng = random.Random(f"{self.seed}:{machine.id}")
        state = _MachineState(machine, physics, rng, ambient_offset=rng.uniform(-2.0, 2.0))
        state.effects = self._calibrate(machine, physics)
        state.load = rng.choice((0.7, 0.8, 0.9, 1.0))
        state.regime_until = rng.uniform(0.5, 4.0) * HOUR
        state.next_fault_at = rng.expovariate(1.0 / FAULT_MEAN_S)
        # The first failure may already be developing at the start, so the first simulated days see failures.
        self._schedule_failure(state, 0.0, healthy_mean_s=6 * DAY, earliest_s=2 * HOUR, may_predate=True)
        targets = self._targets(state, 0.0)
        state.lagged = {name: targets[name] for name in physics.time_constants_s if name in targets}
        return state

    @staticmethod
    def _calibrate(machine: ResolvedMachine, physics: Physics) -> dict[str, list[tuple[str, Effect, float]]]:
        """Per mode: (sensor, effect, absolute size at d=1), from the machine's own limits and ranges."""
        nominal = physics.running(1.0, NOMINAL_AMBIENT)
        out: dict[str, list[tuple[str, Effect, float]]] = {}
        for mode in physics.modes:
            rows = []
            for effect in mode.effects:
                spec = machine.sensors.get(effect.sensor)
                if spec is None or effect.sensor not in nominal:
                    continue
                if effect.kind == "rel":
                    size = effect.size * nominal[effect.sensor]
                else:
                    ceiling = spec.limits.high if spec.limits.high is not None else spec.range.max
                    size = effect.size * (ceiling - nominal[effect.sensor]) / LIMIT_AT_DAMAGE
                rows.append((effect.sensor, effect, size))
            out[mode.name] = rows
        return out

    def _schedule_failure(
        self, state: _MachineState, t: float, *, healthy_mean_s: float, earliest_s: float, may_predate: bool = False
    ) -> None:
        rng = state.rng
        mode = rng.choices(state.physics.modes, weights=[m.weight for m in state.physics.modes])[0]
        span = rng.uniform(mode.min_days, mode.max_days) * DAY
        healthy = rng.expovariate(self.failure_rate / healthy_mean_s)
        # may_predate: the mode may already be developing at t (only at the very start of a run).
        fail_at = t + earliest_s + healthy + (0.0 if may_predate else span)
        state.mode = mode
        state.fail_at = fail_at
        state.degrade_from = fail_at - span

    # ------------------------------------------------------------------------------------------ dynamics
    def _advance(self, state: _MachineState, t: float, ts: datetime) -> list[MaintenanceEvent]:
        rng = state.rng
        events: list[MaintenanceEvent] = []
        if state.status == "down":
            if t >= state.repair_at:
                events.append(self._event(state, ts, MaintenanceKind.REPAIR, state.mode))
                self._schedule_failure(state, t, healthy_mean_s=5 * DAY, earliest_s=6 * HOUR)
                self._start(state, t, rng.choice((0.7, 0.8, 0.9, 1.0)))
        elif t >= state.fail_at:
            events.append(self._event(state, ts, MaintenanceKind.FAILURE, state.mode))
            state.status = "down"
            state.repair_at = t + rng.uniform(4.0, 16.0) * HOUR
        elif t >= state.regime_until:
            self._change_regime(state, t)
        if t >= state.next_fault_at:
            self._start_fault(state, t)
        if state.fault is not None and t >= state.fault.until:
            state.fault = None
        return events

    def _start(self, state: _MachineState, t: float, load: float) -> None:
        state.status = "running"
        state.load = load
        state.started_at = t
        state.regime_until = t + self._regime_length(state)

    def _change_regime(self, state: _MachineState, t: float) -> None:
        rng = state.rng
        # Never stop in the last 12 h before a failure: a failure then always happens while running.
        if state.status == "running" and rng.random() < 0.12 and state.fail_at - t > 12 * HOUR:
            state.status = "off"
            state.regime_until = t + rng.uniform(1.0, 6.0) * HOUR
            return
        load = rng.choice((0.6, 0.7, 0.8, 0.9, 1.0))
        if state.status == "off":
            self._start(state, t, load)
        else:
            state.load = load
            state.regime_until = t + self._regime_length(state)

    @staticmethod
    def _regime_length(state: _MachineState) -> float:
        return min(max(state.rng.expovariate(1.0 / (3 * HOUR)), 20 * 60.0), 10 * HOUR)

    def _start_fault(self, state: _MachineState, t: float) -> None:
        rng = state.rng
        sensor = rng.choice(sorted(state.machine.sensors))
        roll = rng.random()
        state.next_fault_at = t + rng.expovariate(1.0 / FAULT_MEAN_S)
        if roll < 0.35:
            state.fault = _Fault("stuck", sensor, t + rng.uniform(20 * 60.0, 3 * HOUR), state.last.get(sensor))
        elif roll < 0.7:
            state.spike = sensor  # one sample only, applied (and cleared) by _sample
        else:
            kind: Literal["dropout_missing", "dropout_bad"] = "dropout_missing" if rng.random() < 0.5 else "dropout_bad"
            state.fault = _Fault(kind, sensor, t + rng.uniform(5 * 60.0, HOUR))

    def _ambient(self, state: _MachineState, t: float) -> float:
        hour = (self.start.hour + self.start.minute / 60.0 + t / HOUR) % 24.0
        return 22.0 + state.ambient_offset + 4.0 * math.sin(2 * math.pi * (hour - 9.0) / 24.0)

    def _targets(self, state: _MachineState, t: float) -> dict[str, float]:
        ambient = self._ambient(state, t)
        physics = state.physics
        if state.status != "running":
            return physics.off(ambient)
        s = state.load
        values = physics.running(s, ambient)
        since_start = t - state.started_at
        if "vibration_rms" in values and since_start < 30 * 60.0:
            values["vibration_rms"] *= 1.0 + 0.4 * math.exp(-since_start / 180.0)
        d = state.damage(t)
        if d > 0 and state.mode is not None:
            for sensor, effect, size in state.effects[state.mode.name]:
                if effect.kind == "rel":
                    values[sensor] += d * size * s
                else:
                    # Friction and losses grow with speed: the same damage shows less at part load.
                    values[sensor] += d * size * (0.4 + 0.6 * s)
        return values

    def _sample(self, state: _MachineState, t: float, ts: datetime) -> list[Reading]:
        rng = state.rng
        targets = self._targets(state, t)
        dt = self.sample_interval_s
        out: list[Reading] = []
        for name, spec in state.machine.sensors.items():
            if name in state.lagged:
                tau = state.physics.time_constants_s[name]
                state.lagged[name] += (targets[name] - state.lagged[name]) * (1.0 - math.exp(-dt / tau))
                clean = state.lagged[name]
            elif name in targets:
                clean = targets[name]
            else:
                clean = _generic(spec, state.status == "running")
            value = clean + _noise(rng, state.physics.noise.get(name, ("rel", 0.01)), clean)
            if state.status != "running" and name in ("speed", "flow", "motor_current", "current"):
                value = 0.0
            if state.spike == name:
                state.spike = None
                value = value * rng.uniform(1.5, 2.5) + 0.1 * (spec.range.max - spec.range.min)
            fault = state.fault
            quality, status_code = Quality.GOOD, 0
            reading_value: float | None
            if fault is not None and fault.sensor == name:
                if fault.kind == "dropout_missing":
                    continue
                if fault.kind == "dropout_bad":
                    quality, status_code = Quality.BAD, BAD_SENSOR_FAILURE
                elif fault.kind == "stuck":
                    if fault.value is None:
                        fault.value = state.last.get(name, value)
                    value = fault.value
            value = min(max(value, spec.range.min), spec.range.max)
            reading_value = None if quality is Quality.BAD else value
            if reading_value is not None:
                state.last[name] = reading_value
            out.append(
                # Validation is skipped on purpose (these values are built to be valid and it triples the
                # cost); every field is given so pydantic resolves no defaults. Tests round-trip them.
                Reading.model_construct(
                    _READING_FIELDS,
                    v=1,
                    kind="reading",
                    machine_id=state.machine.id,
                    sensor=name,
                    ts=ts,
                    value=reading_value,
                    unit=spec.unit,
                    quality=quality,
                    status_code=status_code,
                    server_ts=None,
                    ingest_ts=ts,
                    source="simulator",
                    flags=(),
                )
            )
        return out

    def _event(
        self, state: _MachineState, ts: datetime, kind: MaintenanceKind, mode: FailureMode | None
    ) -> MaintenanceEvent:
        state.events += 1
        mode_name = mode.name if mode is not None else None
        verb = "failed" if kind is MaintenanceKind.FAILURE else "repaired"
        return MaintenanceEvent(
            event_id=f"sim-{self.seed}-{state.machine.id}-{state.events:04d}-{kind.value}",
            machine_id=state.machine.id,
            ts=ts,
            event=kind,
            failure_mode=mode_name,
            text=f"simulated: {state.machine.id} {verb} ({(mode_name or 'unknown').replace('_', ' ')})",
        )

    # ------------------------------------------------------------------------------------------ helpers
    @property
    def _t(self) -> float:
        return self._steps * self.sample_interval_s

    def _time(self, t: float) -> datetime:
        return self.start + timedelta(seconds=t)

    def _state(self, machine_id: str) -> _MachineState:
        for state in self._states:
            if state.machine.id == machine_id:
                return state
        raise SimulatorError(f"unknown machine {machine_id!r}")


def _generic(spec: SensorSpec, running: bool) -> float:
    """A sensor the type template does not know: a steady signal at a third of its range while running."""
    span = spec.range.max - spec.range.min
    return spec.range.min + (0.35 if running else 0.05) * span


def _noise(rng: random.Random, noise: tuple[Literal["abs", "rel"], float], value: float) -> float:
    kind, size = noise
    return rng.gauss(0.0, size if kind == "abs" else size * abs(value))
