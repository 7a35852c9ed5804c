"""The store survives kill -9 of a real writer mid-transaction: sound file, whole transactions."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from fdguard.store import Store
from tests.conftest import python_proc


@pytest.mark.parametrize("ready_after", [1, 300, 3000])
def test_kill_9_mid_write_leaves_a_sound_store(tmp_path: Path, spawn, ready_after: int) -> None:
    db = tmp_path / "fd.db"
    child = spawn(python_proc("store_writer.py", str(db), str(ready_after)))
    assert child.ready == "ready"
    # The writer is inside its loop (it never stops between transactions): kill it now.
    child.proc.send_signal(signal.SIGKILL)
    assert child.proc.wait(timeout=10) == -signal.SIGKILL
    with Store(db) as s:
        assert s.integrity_check() == "ok"
        [t] = s.targets()
        counts = [x.count for x in s.samples(t.id)]
        # Every transaction acknowledged before "ready" is there, and nothing is torn:
        # samples are exactly 0..n-1, each with its 3 kind counts and its event.
        assert len(counts) >= ready_after
        assert counts == list(range(len(counts)))
        assert len(s.kind_counts(t.id)) == 3 * len(counts)
        assert len(s.events(t.id)) == len(counts)
        # And the store is writable again after recovery.
        s.add_sample(t.id, 1e9, 1, None)
        assert s.samples(t.id)[-1].count == 1
