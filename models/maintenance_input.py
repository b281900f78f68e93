"""What the model service accepts from the maintenance topic: the labels it learns from, checked before use.

The maintenance collector (:mod:`ingest.maintenance`) refuses bad rows of a CMMS export, but anything may be sent
to the topic straight (another tool, a replay, a mistake), and one wrong label does lasting harm: a failure dated
2999 resolves every pending window of its machine as healthy and stays among its failures; a repair dated 1970
resets the machine's learnt normal; 5 MB of text is kept in its state. So the service applies the same rules
again, as a pure function, and sends what it refuses to the dead-letter topic with the reason:

===================  ===========================================================================================
``kind``             not a maintenance event (a feature vector, a reading, ... on the maintenance topic)
``unknown_machine``  the machine is not in the plant file's ``[[machines]]``
``implausible_time`` before :attr:`MaintenanceRules.earliest` (the plant's data cannot be older), older than
                     :attr:`MaintenanceRules.max_age_s` behind the newest data of its machine, or more than
                     :attr:`MaintenanceRules.max_future_s` ahead of the wall clock (the plant's clock-skew limit)
``oversized``        text, failure mode or event id longer than the collector lets through
===================  ===========================================================================================

>>> from datetime import UTC, datetime
>>> from vigil.contracts import MaintenanceEvent
>>> rules = MaintenanceRules(machines=frozenset({"PMP-001"}))
>>> now = datetime(2026, 6, 1, tzinfo=UTC)
>>> ok = MaintenanceEvent(machine_id="PMP-001", ts=datetime(2026, 5, 30, tzinfo=UTC), event="failure")
>>> check_maintenance(ok, rules, now=now) is None
True
>>> check_maintenance(ok.model_copy(update={"ts": datetime(2999, 1, 1, tzinfo=UTC)}), rules, now=now)
Refusal(reason='implausible_time', field='ts', detail='2999-01-01T00:00:00+00:00 is more than 86400 s ahead of the clock (2026-06-01T00:00:00+00:00)')
>>> check_maintenance(ok.model_copy(update={"machine_id": "PMP-999"}), rules, now=now).reason
'unknown_machine'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vigil.config import VigilConfig
from vigil.config.mapping import MaintenanceMapping
from vigil.contracts import MaintenanceEvent

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""No plant's sensor data in Vigil is older (the contract's ISO timestamps reach back to year 1)."""
MAX_TEXT_CHARS: int = MaintenanceMapping.model_fields["max_text_chars"].default
"""The collector's default limit on free text (``max_text_chars``)."""
MAX_SHORT_CHARS = 200
"""Event ids (work orders) and failure modes: the collector's limit on a work order."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a record of the maintenance topic is not used: the dead letter's reason, the field and the detail."""

    reason: str
    field: str
    detail: str

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail


@dataclass(frozen=True, slots=True)
class MaintenanceRules:
    """The plant's limits on a maintenance event (see the module docstring)."""

    machines: frozenset[str]
    earliest: datetime = EARLIEST
    max_age_s: float = 2 * 365 * 86_400.0
    """How far behind the newest data of its machine an event may be (a late CMMS entry is weeks, not years)."""
    max_future_s: float = 86_400.0
    """How far ahead of the wall clock (``inf``: no limit)."""
    max_text_chars: int = MAX_TEXT_CHARS
    max_short_chars: int = MAX_SHORT_CHARS

    @classmethod
    def for_plant(cls, config: VigilConfig) -> MaintenanceRules:
        """The configured machines; the future limit is the plant's clock-skew limit (``windows.max_clock_skew_s``),
        the one the feature worker applies to readings."""
        return cls(machines=frozenset(config.machines_by_id), max_future_s=config.windows.max_clock_skew_s)


def check_maintenance(
    message: Any, rules: MaintenanceRules, *, now: datetime, newest: datetime | None = None
) -> Refusal | None:
    """Why ``message`` (a decoded record of the maintenance topic) must not be used, or ``None`` when it may.

    ``now`` is the wall clock, ``newest`` the event time of the newest data the service holds of the machine
    (``None`` when it has none yet: only :attr:`MaintenanceRules.earliest` bounds the past then).
    """
    if not isinstance(message, MaintenanceEvent):
        kind = getattr(message, "kind", type(message).__name__)
        return Refusal("kind", "kind", f"a {kind!r} message is not a maintenance event")
    if message.machine_id not in rules.machines:
        return Refusal("unknown_machine", "machine_id", f"machine {message.machine_id!r} is not configured")
    for name, value, limit in (
        ("text", message.text, rules.max_text_chars),
        ("failure_mode", message.failure_mode or "", rules.max_short_chars),
        ("event_id", message.event_id, rules.max_short_chars),
    ):
        if len(value) > limit:
            return Refusal("oversized", name, f"{len(value)} characters (at most {limit})")
    ts = message.ts
    if ts < rules.earliest:
        return Refusal("implausible_time", "ts", f"{ts.isoformat()} is before {rules.earliest.isoformat()}")
    if newest is not None and rules.max_age_s != math.inf:
        try:
            floor = newest - timedelta(seconds=rules.max_age_s)
        except OverflowError:  # before year 1: nothing is older
            floor = datetime.min.replace(tzinfo=UTC)
        if ts < floor:
            return Refusal(
                "implausible_time",
                "ts",
                f"{ts.isoformat()} is more than {rules.max_age_s:g} s before the machine's newest data "
                f"({newest.isoformat()})",
            )
    if rules.max_future_s != math.inf and (ts - now).total_seconds() > rules.max_future_s:
        return Refusal(
            "implausible_time",
            "ts",
            f"{ts.isoformat()} is more than {rules.max_future_s:g} s ahead of the clock ({now.isoformat()})",
        )
    return None
