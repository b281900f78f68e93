"""The sqlite store: lifecycle state and outbox in one transaction, idempotent enqueue, ordered pending."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts.exceptions import StoreError
from alerts.render import Notification
from alerts.store import AlertStore, OutRecord, notification_id
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


def test_a_batch_is_recorded_with_its_state_and_published_once(tmp_path: Path) -> None:
    """The output log: a batch's Kafka records, offsets and InfluxDB lines are written with the lifecycle state, in
    order, survive a reopen (a crash) and are forgotten only when told they were published / written."""
    path = tmp_path / "outbox.sqlite3"
    store = AlertStore(path)
    store.open()
    first = [OutRecord("alerts", b"M-1", b"open"), OutRecord("dead", None, b"bad")]
    store.commit(
        {"M-1|failure_risk": {"above": 0}},
        None,
        [note(1)],
        1.0,
        records=first,
        influx_lines=["alerts,alert_id=a seq=1i 1"],
        offsets={("predictions", 0): 10},
    )
    store.commit(
        {}, None, [], 2.0, records=[OutRecord("alerts", b"M-1", b"resolved")], offsets={("predictions", 0): 12}
    )
    store.commit({}, None, [], 3.0)  # state only: no batch to publish
    store.close()

    again = AlertStore(path)
    again.open()
    pending = again.unpublished()
    assert [(b.offsets, b.records) for b in pending] == [
        ({("predictions", 0): 10}, tuple(first)),
        ({("predictions", 0): 12}, (OutRecord("alerts", b"M-1", b"resolved"),)),
    ]
    assert pending[1].batch == pending[0].batch + 1
    again.published(pending[0].batch)
    assert [b.batch for b in again.unpublished()] == [pending[1].batch]
    lines = again.influx_pending()
    assert [line for _, line in lines] == ["alerts,alert_id=a seq=1i 1"]
    again.influx_written(lines[-1][0])
    assert again.influx_pending() == []
    again.published(pending[1].batch)
    again.commit({}, None, [], 4.0, records=[OutRecord("alerts", None, b"x")], offsets={("p", 1): 1})
    assert again.unpublished()[0].batch == pending[1].batch + 1, "batch numbers never repeat, even after a drain"
    again.close()
