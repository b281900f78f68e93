"""The spool as a write-ahead log: recovery after the process died mid-write, sequences never reused, marks.

The torn record is made the way a crash makes it: a process appends and dies without closing (so every commit
is still in SQLite's write-ahead file, not yet checkpointed), then the tail of that file is cut mid-frame.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ingest.spool import Spool
from vigil.config import SpoolSettings

WRITER = r"""
import os, sys
from pathlib import Path
from ingest.spool import Spool
from vigil.config import SpoolSettings

spool = Spool(SpoolSettings(path=Path(sys.argv[1]), fsync=sys.argv[2]))
spool.open()
for seq in range(1, 6):
    spool.append(seq, "readings", b"PMP-001", (b"batch %d " % seq) * 200, readings=seq)
os._exit(0)  # no close(): the commits stay in the write-ahead file, as after kill -9
"""


def _write_and_die(path: Path, fsync: str = "batch") -> Path:
    subprocess.run([sys.executable, "-c", WRITER, str(path), fsync], check=True, cwd=Path.cwd())
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > 0, "the commits are in the write-ahead file"
    return wal


def _stored(path: Path) -> list[tuple[int, int]]:
    spool = Spool(SpoolSettings(path=path))
    spool.open()
    try:
        return [(m.seq, m.readings) for m in spool.peek(100)]
    finally:
        spool.close()


@pytest.mark.parametrize("fsync", ["batch", "os"])
def test_every_committed_append_survives_the_process_dying_without_close(tmp_path: Path, fsync: str) -> None:
    path = tmp_path / "spool.sqlite"
    _write_and_die(path, fsync)
    assert _stored(path) == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]


def test_a_torn_last_record_is_dropped_and_everything_before_it_is_intact(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    wal = _write_and_die(path)
    with wal.open("r+b") as f:  # cut the last frame in half: its checksum no longer matches
        f.truncate(wal.stat().st_size - 100)
    assert _stored(path) == [(1, 1), (2, 2), (3, 3), (4, 4)]
    spool = Spool(SpoolSettings(path=path))
    spool.open()
    try:
        assert spool.last_seq() == 4
        assert spool.append(5, "readings", b"PMP-001", b"again", readings=5) == (True, 0)
        assert [m.value for m in spool.peek(10)][-1] == b"again"
        assert (spool.messages, spool.readings) == (5, 15)
    finally:
        spool.close()


def test_a_sequence_is_never_reused_after_the_spool_emptied(tmp_path: Path) -> None:
    settings = SpoolSettings(path=tmp_path / "spool.sqlite")
    spool = Spool(settings)
    spool.open()
    for seq in (1, 2, 3):
        spool.append(seq, "readings", None, b"v", readings=1)
    assert spool.remove([1, 2, 3]) == (3, 3)
    assert spool.messages == 0
    assert spool.last_seq() == 3
    spool.close()
    again = Spool(settings)
    again.open()
    assert again.last_seq() == 3, "a restarted publisher continues after 3, so a header seq names one message"
    again.close()


def test_marks_only_rise_and_are_committed_with_the_removal(tmp_path: Path) -> None:
    settings = SpoolSettings(path=tmp_path / "spool.sqlite")
    spool = Spool(settings)
    spool.open()
    spool_id = spool.spool_id
    spool.append(1, "readings", None, b"v", readings=2)
    assert spool.remove([1], {("readings", 0): 10, ("readings", 1): 4}) == (1, 2)
    assert spool.remove([], {("readings", 0): 7, ("readings", 2): 1}) == (0, 0)
    assert spool.remove([99]) == (0, 0), "a sequence not stored is ignored"
    spool.close()
    again = Spool(settings)
    again.open()
    assert again.marks() == {("readings", 0): 10, ("readings", 1): 4, ("readings", 2): 1}
    assert again.spool_id == spool_id, "the identity in the headers is the file's, across restarts"
    again.close()
