"""The model service's check of the maintenance topic (pure): the issue's bad labels are refused with a reason,
good ones pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models.maintenance_input import MaintenanceRules, check_maintenance
from vigil.config import load_config
from vigil.contracts import FeatureVector, MaintenanceEvent, Reading, decode, encode

CONFIG = load_config(environ={})
RULES = MaintenanceRules.for_plant(CONFIG)
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
NEWEST = datetime(2026, 6, 1, 11, 50, tzinfo=UTC)
GOOD = MaintenanceEvent(machine_id="PMP-001", ts=NOW - timedelta(hours=3), event="failure", failure_mode="bearing")


def _wire(message: object) -> object:
    """As the service sees it: decoded from the bytes on the topic."""
    return decode(encode(message))  # type: ignore[arg-type]


CASES = [
    ("unknown machine", GOOD.model_copy(update={"machine_id": "PMP-999"}), "unknown_machine", "machine_id"),
    ("failure dated 2999", GOOD.model_copy(update={"ts": datetime(2999, 1, 1, tzinfo=UTC)}), "implausible_time", "ts"),
    (
        "repair dated 1970",
        GOOD.model_copy(update={"ts": datetime(1970, 1, 1, tzinfo=UTC), "event": "repair"}),
        "implausible_time",
        "ts",
    ),
    (
        "three years behind the machine's data",
        GOOD.model_copy(update={"ts": NEWEST - timedelta(days=3 * 365)}),
        "implausible_time",
        "ts",
    ),
    ("two days ahead of the clock", GOOD.model_copy(update={"ts": NOW + timedelta(days=2)}), "implausible_time", "ts"),
    ("5 MB of text", GOOD.model_copy(update={"text": "x" * 5_000_000}), "oversized", "text"),
    ("a long failure mode", GOOD.model_copy(update={"failure_mode": "m" * 201}), "oversized", "failure_mode"),
    ("a long event id", GOOD.model_copy(update={"event_id": "w" * 201}), "oversized", "event_id"),
    (
        "a feature vector",
        FeatureVector(machine_id="PMP-001", machine_type="pump", window_start=NOW, window_end=NOW, features={}),
        "kind",
        "kind",
    ),
    ("a reading", Reading(machine_id="PMP-001", sensor="flow", ts=NOW, value=1.0), "kind", "kind"),
]


@pytest.mark.parametrize(("name", "message", "reason", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_maintenance_records_are_refused_with_the_reason(
    name: str, message: object, reason: str, field: str
) -> None:
    refusal = check_maintenance(_wire(message), RULES, now=NOW, newest=NEWEST)
    assert refusal is not None, name
    assert (refusal.reason, refusal.field) == (reason, field)
    assert refusal.detail and str(refusal).startswith(field)


@pytest.mark.parametrize(
    "event",
    [
        GOOD,
        GOOD.model_copy(update={"event": "repair", "ts": NOW - timedelta(days=30), "text": "bearing replaced" * 200}),
        GOOD.model_copy(update={"event": "inspection", "ts": NOW + timedelta(hours=20)}),  # within the skew limit
        GOOD.model_copy(update={"machine_id": "CMP-001", "ts": NEWEST - timedelta(days=700)}),  # a late CMMS entry
    ],
)
def test_good_maintenance_events_pass(event: MaintenanceEvent) -> None:
    assert check_maintenance(_wire(event), RULES, now=NOW, newest=NEWEST) is None


def test_without_data_of_the_machine_only_the_floor_bounds_the_past() -> None:
    old = GOOD.model_copy(update={"ts": datetime(2003, 5, 1, tzinfo=UTC)})
    assert check_maintenance(old, RULES, now=NOW, newest=None) is None
    assert check_maintenance(old, RULES, now=NOW, newest=NEWEST) is not None
    assert (
        check_maintenance(old.model_copy(update={"ts": datetime(1999, 12, 31, tzinfo=UTC)}), RULES, now=NOW) is not None
    )


def test_limits_follow_the_rules() -> None:
    future = GOOD.model_copy(update={"ts": NOW + timedelta(days=400)})
    assert check_maintenance(future, RULES, now=NOW) is not None
    no_limit = MaintenanceRules(machines=RULES.machines, max_future_s=float("inf"), max_age_s=float("inf"))
    assert check_maintenance(future, no_limit, now=NOW, newest=NEWEST) is None
    ancient = GOOD.model_copy(update={"ts": datetime(2000, 1, 1, tzinfo=UTC)})
    assert check_maintenance(ancient, no_limit, now=NOW, newest=NEWEST) is None
    # A max age beyond what a datetime can subtract is no limit, not a crash.
    huge = MaintenanceRules(machines=RULES.machines, max_age_s=1e300)
    assert check_maintenance(ancient, huge, now=NOW, newest=NEWEST) is None
