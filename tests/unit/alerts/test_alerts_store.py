"""The sqlite store: lifecycle state and outbox in one transaction, idempotent enqueue, ordered pending."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts.exceptions import StoreError
from alerts.render import Notification
from alerts.store import AlertStore, notification_id
from vigil.contracts import Alert

T = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def note(i: int, receiver: str = "hook") -> Notification:
    a = Alert(
        alert_id=f"M-{i}.failure_risk.x",
        machine_id=f"M-{i}",
        alert_kind="failure_risk",
        state="open",
        severity="warning",
        ts=T,
        opened_at=T,
        summary=f"risk {i}",
    )
    return Notification(notification_id(receiver, [a]), receiver, f"M-{i}", (a,), "http://x")


def test_commit_load_and_outbox_order(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "state" / "outbox.sqlite3")
    with pytest.raises(StoreError):
        store.load()
    store.open()
    added = store.commit(
        {"M-1|failure_risk": {"above": 1}}, {"machines_off": ["M-9"]}, [note(1), note(2), note(3)], 1.0
    )
    assert added == 3
    assert store.commit({}, None, [note(2)], 2.0) == 0, "the same notification again is ignored"
    store.close()

    again = AlertStore(tmp_path / "state" / "outbox.sqlite3")
    again.open()
    tracks, flags = again.load()
    assert tracks == {"M-1|failure_risk": {"above": 1}} and flags == {"machines_off": ["M-9"]}
    pending = again.pending("hook")
    assert [e.notification.alerts[0].machine_id for e in pending] == ["M-1", "M-2", "M-3"]
    assert pending[0].notification == note(1)
    again.mark_delivered(pending[0].seq, 3.0)
    again.mark_failed(pending[1].seq, "HTTP 400", dead=True)
    again.mark_failed(pending[2].seq, "down", dead=False)
    assert [e.notification.alerts[0].machine_id for e in again.pending("hook")] == ["M-3"]
    assert again.stats() == {"pending": 1, "delivered": 1, "dead": 1}
    assert again.receivers_pending() == ["hook"]
    again.close()
