"""Delayed labels: positives before a failure within the horizon, negatives after it, bounded memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.labels import PendingLabels

T0 = datetime(2026, 1, 1, tzinfo=UTC)
H = 3600.0 * 4


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_vectors_within_horizon_before_a_failure_are_positive_older_ones_negative() -> None:
    pending = PendingLabels(horizon_s=H, sample_rate=1.0)
    for i in range(0, 600, 10):
        assert pending.add("m1", at(i), {"a": float(i)}, score=0.0) == []
    resolved = pending.failure("m1", at(600))
    positives = sorted(r.ts for r in resolved if r.positive)
    negatives = [r for r in resolved if not r.positive]
    assert positives[0] == at(600 - 240)
    assert all(r.ts < at(600 - 240) for r in negatives)
    assert len(positives) + len(negatives) == 60
    assert all(r.lead_s is not None and 0 < r.lead_s <= H for r in resolved if r.positive)
    assert pending.count("m1") == 0


def test_horizon_passing_without_failure_resolves_negative_and_other_machines_are_untouched() -> None:
    pending = PendingLabels(horizon_s=H, sample_rate=1.0)
    pending.add("m1", at(0), {"a": 1.0}, score=0.0)
    pending.add("m2", at(0), {"a": 1.0}, score=0.0)
    assert pending.advance("m1", at(239)) == []
    [resolved] = pending.advance("m1", at(241))
    assert not resolved.positive and resolved.machine_id == "m1"
    assert pending.count("m2") == 1


def test_failure_known_before_the_vector_labels_it_immediately() -> None:
    pending = PendingLabels(horizon_s=H, sample_rate=1.0)
    pending.failure("m1", at(100))
    [resolved] = pending.add("m1", at(50), {"a": 1.0}, score=0.0)
    assert resolved.positive and resolved.lead_s == 50 * 60


def test_repair_resets_the_machine() -> None:
    pending = PendingLabels(horizon_s=H, sample_rate=1.0)
    pending.failure("m1", at(0))
    for i in range(1, 5):
        pending.add("m1", at(i * 10), {"a": 1.0}, score=0.0)
    assert pending.repair("m1") == 4
    assert pending.count("m1") == 0


def test_negatives_are_subsampled_with_importance_weights_and_suspicious_vectors_are_kept() -> None:
    pending = PendingLabels(horizon_s=H, sample_rate=0.25, keep_above=0.5)
    for i in range(2000):
        pending.add("m1", at(i / 100), {"a": 1.0}, score=0.1)
    kept = pending.count("m1")
    assert 350 < kept < 650, kept  # about a quarter, deterministic
    assert pending.skipped_by_sampling == 2000 - kept
    for i in range(100):
        pending.add("m1", at(30 + i / 100), {"a": 1.0}, score=0.9)
    assert pending.count("m1") == kept + 100
    resolved = pending.advance("m1", at(10_000))
    weights = {round(r.weight, 2) for r in resolved}
    assert weights == {4.0, 1.0}


def test_sampling_is_deterministic_across_instances() -> None:
    a, b = PendingLabels(H, 0.3), PendingLabels(H, 0.3)
    for i in range(500):
        a.add("m1", at(i), {"a": 1.0}, score=0.0)
        b.add("m1", at(i), {"a": 1.0}, score=0.0)
    assert [p.ts for p in a.advance("m1", at(10_000))] == [p.ts for p in b.advance("m1", at(10_000))]


def test_per_machine_cap_bounds_memory() -> None:
    pending = PendingLabels(horizon_s=1e9, sample_rate=1.0, max_per_machine=50)
    overflow = []
    for i in range(200):
        overflow += pending.add("m1", at(i), {"a": 1.0}, score=0.0)
    assert pending.count("m1") == 50
    assert len(overflow) == 150 and pending.dropped_by_cap == 150
    assert all(not r.positive for r in overflow)
