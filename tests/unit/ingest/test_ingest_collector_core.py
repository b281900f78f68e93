"""The one collector shape: a protocol written as one small QueuedCollector subclass gets delivery (validator,
publisher), reconnects, overflow handling and the run-until-stop loop from :mod:`ingest.collector_core`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ingest.backoff import Backoff
from ingest.collector_core import Delivery, QueuedCollector, collect_all
from ingest.validation import Validator
from vigil.config import VigilConfig
from vigil.contracts import Gap, Reading

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class _Source:
    def __init__(self, name: str) -> None:
        self.name = name
        self.reconnect_initial_s = 0.01
        self.reconnect_max_s = 0.02


class _Publisher:
    """Takes what a KafkaPublisher takes, keeps it in lists."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.gaps: list[Gap] = []
        self.letters: list[Any] = []

    def add(self, reading: Reading) -> None:
        self.readings.append(reading)

    def add_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)

    def add_dead_letter(self, letter: Any) -> None:
        self.letters.append(letter)


class _Counting(QueuedCollector):
    """A toy protocol: each connection delivers ``per_connection`` values of PMP-001/flow, then is lost; from
    the second connection on, a Gap first. ``fail_on`` raises a bug on that connection."""

    kind = "toy"

    def __init__(self, name: str, per_connection: int, connections: int, fail_on: int | None = None, **kw: Any):
        super().__init__(_Source(name), None, **kw)
        self.per_connection, self.connections, self.fail_on = per_connection, connections, fail_on
        self.done = asyncio.Event()

    async def _one_connection(self, backoff: Backoff) -> None:
        n = self.counters["connects"]
        if n >= self.connections:
            self.done.set()
            await asyncio.Event().wait()  # no more data, like a quiet server
        self.counters["connects"] += 1
        self.ever_connected = True
        if self.fail_on == n:
            raise RuntimeError("a bug in the protocol module")
        if n:
            await self._put(Gap(machine_id="PMP-001", start=T0, end=T0, reason="connection_lost", source=self.name))
        for i in range(self.per_connection):
            ts = T0 + timedelta(seconds=n * self.per_connection + i)
            machine = "PMP-001" if i % 10 else "NOPE-9"  # every tenth value names a machine the plant lacks
            self.counters["readings"] += 1
            await self._put(Reading(machine_id=machine, sensor="flow", ts=ts, value=float(i), source=self.name))


def test_events_go_through_the_validator_to_the_publisher_across_reconnects(example_config: VigilConfig) -> None:
    publisher, validator = _Publisher(), Validator(example_config)
    toy = _Counting("toy", per_connection=20, connections=3, queue_maxsize=5)

    async def scenario() -> dict[str, Any]:
        stop = asyncio.Event()
        asyncio.get_running_loop().create_task(_stop_when(toy.done, stop))
        return await collect_all([toy], Delivery(publisher, validator), stop)  # type: ignore[arg-type]

    counters = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert counters["toy"]["connects"] == 3
    # 60 values, six of them for a machine the plant does not have: rejected by the validator, not published.
    assert len(publisher.readings) == 54 and validator.counters["unknown_machine"] == 6
    assert [r.ts for r in publisher.readings] == sorted(r.ts for r in publisher.readings)  # none lost, in order
    assert len(publisher.gaps) == 2  # one per reconnect


async def _stop_when(done: asyncio.Event, stop: asyncio.Event) -> None:
    await done.wait()
    await asyncio.sleep(0.05)  # let the consumer take what is queued; the rest is drained at stop
    stop.set()


def test_a_failing_collector_stops_the_others_which_still_deliver_and_the_failure_is_raised(
    example_config: VigilConfig,
) -> None:
    publisher = _Publisher()
    good = _Counting("good", per_connection=30, connections=1)
    bad = _Counting("bad", per_connection=30, connections=5, fail_on=1)

    async def scenario() -> None:
        await collect_all([good, bad], Delivery(publisher, Validator(example_config)), asyncio.Event())  # type: ignore[list-item]

    with pytest.raises(RuntimeError, match="a bug in the protocol module"):
        asyncio.run(asyncio.wait_for(scenario(), 10))
    by_source = {s: sum(r.source == s for r in publisher.readings) for s in ("good", "bad")}
    assert by_source == {"good": 27, "bad": 27}, by_source  # all the first connections' values, validated


def test_drop_oldest_counts_what_a_slow_consumer_lost() -> None:
    toy = _Counting("toy", per_connection=50, connections=1, queue_maxsize=10, overflow="drop_oldest")

    async def scenario() -> list[Reading | Gap]:
        async with toy:
            await toy.done.wait()
            return toy.drain()

    kept = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert len(kept) == 10 and toy.counters["dropped_overflow"] == 40
    assert [e.value for e in kept if isinstance(e, Reading)] == [float(i) for i in range(40, 50)]  # the newest
