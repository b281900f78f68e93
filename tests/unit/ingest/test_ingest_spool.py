"""The spool: emission order, byte bound with both policies, durability across reopen."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ingest.exceptions import SpoolError
from ingest.spool import Spool
from vigil.config import SpoolSettings


def _spool(tmp_path: Path, **kw: Any) -> Spool:
    spool = Spool(SpoolSettings(path=tmp_path / "spool" / "s.sqlite", **kw))
    spool.open()
    return spool


def test_peek_returns_messages_in_sequence_order_even_when_appended_out_of_order(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    for seq in (3, 1, 2):
        spool.append(seq, "t", b"k", f"v{seq}".encode(), readings=seq)
    assert [(m.seq, m.value, m.readings) for m in spool.peek(10)] == [(1, b"v1", 1), (2, b"v2", 2), (3, b"v3", 3)]
    assert spool.messages == 3
    assert spool.readings == 6
    assert spool.last_seq() == 3


def test_remove_forgets_exactly_the_acknowledged_messages(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    for seq in range(1, 1201):
        spool.append(seq, "t", None, b"x", readings=1)
    spool.remove(range(1, 1001))  # more than one SQL statement's worth of parameters
    assert [m.seq for m in spool.peek(500)] == list(range(1001, 1201))
    assert spool.messages == 200
    assert spool.readings == 200
    assert spool.size_bytes > 0


def test_drop_newest_refuses_what_does_not_fit_and_counts_it(tmp_path: Path) -> None:
    spool = _spool(tmp_path, max_bytes=2048, policy="drop_newest")
    assert spool.append(1, "t", b"m", os.urandom(1000), readings=10) == (True, 0)
    assert spool.append(2, "t", b"m", os.urandom(1000), readings=20) == (True, 0)
    assert spool.append(3, "t", b"m", os.urandom(1000), readings=30) == (False, 30)
    assert [m.seq for m in spool.peek(10)] == [1, 2]
    assert spool.counters.dropped_readings == 30
    assert spool.counters.by_reason == {"spool_full_drop_newest": 30}
    assert spool.size_bytes <= 2048


def test_drop_oldest_makes_room_by_deleting_the_oldest(tmp_path: Path) -> None:
    spool = _spool(tmp_path, max_bytes=2048, policy="drop_oldest")
    spool.append(1, "t", b"m", os.urandom(1000), readings=10)
    spool.append(2, "t", b"m", os.urandom(1000), readings=20)
    assert spool.append(3, "t", b"m", os.urandom(1000), readings=30) == (True, 10)
    assert [m.seq for m in spool.peek(10)] == [2, 3]
    assert spool.readings == 50
    assert spool.counters.dropped_messages == 1
    assert spool.size_bytes <= 2048


def test_a_message_larger_than_the_bound_is_dropped_whatever_the_policy(tmp_path: Path) -> None:
    spool = _spool(tmp_path, max_bytes=1024, policy="drop_oldest")
    spool.append(1, "t", None, os.urandom(100), readings=1)
    assert spool.append(2, "t", None, os.urandom(5000), readings=7) == (False, 7)
    assert [m.seq for m in spool.peek(10)] == [1]
    assert spool.counters.by_reason == {"message_larger_than_spool": 7}


def test_spooled_messages_survive_closing_and_reopening(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    spool.append(1, "readings", b"PMP-001", b"one", readings=2)
    spool.append(2, "maintenance", None, b"two", readings=0)
    spool.close()
    again = _spool(tmp_path)
    assert [(m.seq, m.topic, m.key, m.value) for m in again.peek(10)] == [
        (1, "readings", b"PMP-001", b"one"),
        (2, "maintenance", None, b"two"),
    ]
    assert (again.messages, again.readings, again.last_seq()) == (2, 2, 2)


def test_using_a_spool_that_is_not_open_is_a_clear_error(tmp_path: Path) -> None:
    spool = Spool(SpoolSettings(path=tmp_path / "s.sqlite"))
    with pytest.raises(SpoolError, match="not open"):
        spool.peek(1)


def test_an_unusable_path_is_a_spool_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    spool = Spool(SpoolSettings(path=tmp_path / "file" / "s.sqlite"))
    with pytest.raises(SpoolError, match="cannot open spool"):
        spool.open()


def test_the_same_sequence_is_stored_once(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    assert spool.append(7, "t", None, b"x", readings=3) == (True, 0)
    assert spool.append(7, "t", None, b"x", readings=3) == (False, 0)
    assert (spool.messages, spool.readings) == (1, 3)


def test_values_are_stored_compressed_and_read_back_intact(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    value = b'{"sensor":"flow","value":1.0}' * 1000
    spool.append(1, "t", b"k", value, readings=1000)
    assert spool.size_bytes < len(value) / 10
    assert spool.peek(1)[0].value == value


def test_a_spool_file_is_used_by_one_spool_at_a_time(tmp_path: Path) -> None:
    first = _spool(tmp_path)
    with pytest.raises(SpoolError, match="in use"):
        _spool(tmp_path)
    first.close()
    _spool(tmp_path).close()  # released on close (and by the kernel when a process dies)
