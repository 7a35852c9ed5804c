"""The SQLite store: round trips, target identity, retention, bounded size, default path."""

from __future__ import annotations

from pathlib import Path

import pytest

from fdguard.errors import StoreError
from fdguard.model import ProcessRef
from fdguard.store import Store, default_path


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "sub" / "fd.db")
    yield s
    s.close()


def test_round_trip_of_every_table(store: Store) -> None:
    a = store.target_id(ProcessRef(10, 100), ("node", "app.js"), 1.0, label="pid:10")
    assert store.target_id(ProcessRef(10, 100), ("node", "app.js"), 2.0) == a
    with store.transaction():
        store.add_samples([(a, 1.0, 5, 1024), (a, 2.0, 6, 1024)])
        store.add_kind_counts(a, 2.0, {"tcp": 3, "file": 3}, {"CLOSE-WAIT": 2})
        store.add_alert(a, 2.0, rule="eta", state="firing", severity="critical",
                        message="m", data={"eta": 10})
        store.add_event(a, 2.0, "limit_change", {"old": 1024, "new": 2048})
    [t] = store.targets()
    assert t.ref == ProcessRef(10, 100)
    assert t.command == ("node", "app.js")
    assert t.label == "pid:10"
    assert t.last_seen == 2.0
    assert [(s.t, s.count, s.soft_limit) for s in store.samples(a)] == [(1.0, 5, 1024),
                                                                       (2.0, 6, 1024)]
    assert [s.count for s in store.samples(a, since=1.5)] == [6]
    kc = {(k.dim, k.name): k.n for k in store.kind_counts(a)}
    assert kc == {("kind", "tcp"): 3, ("kind", "file"): 3, ("tcp_state", "CLOSE-WAIT"): 2}
    [al] = store.alerts(a)
    assert (al.rule, al.state, al.data) == ("eta", "firing", {"eta": 10})
    [ev] = store.events()
    assert ev.type == "limit_change"
    assert ev.data == {"old": 1024, "new": 2048}
    assert store.integrity_check() == "ok"


def test_restarted_process_is_a_new_target(store: Store) -> None:
    a = store.target_id(ProcessRef(10, 100), ("x",), 1.0)
    b = store.target_id(ProcessRef(10, 200), ("x",), 2.0)  # same PID, new start time
    assert a != b
    assert len(store.targets()) == 2


def test_failed_transaction_rolls_back(store: Store) -> None:
    a = store.target_id(ProcessRef(1, 1), ("x",), 0.0)

    def failing() -> None:
        with store.transaction():
            store.add_sample(a, 1.0, 1, None)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        failing()
    assert store.samples(a) == []


def test_persisted_across_reopen_in_wal_mode(tmp_path: Path) -> None:
    p = tmp_path / "fd.db"
    with Store(p) as s:
        a = s.target_id(ProcessRef(1, 1), ("x",), 0.0)
        s.add_sample(a, 1.0, 7, 64)
    with Store(p) as s:
        assert [x.count for x in s.samples(a)] == [7]
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_retention_downsamples_to_bucket_max_and_drops_beyond_horizon(store: Store) -> None:
    a = store.target_id(ProcessRef(1, 1), ("x",), 0.0)
    # 0..599 s: one sample a second, count = t % 60 (a sawtooth 0..59 each minute).
    store.add_samples([(a, float(t), t % 60, 100) for t in range(600)])
    res = store.retain(now=600.0, raw_for=300.0, keep_for=100000.0, bucket=60.0)
    assert res.downsampled == 300
    assert res.buckets_written == 5
    rows = store.samples(a)
    buckets = [r for r in rows if r.step == 60.0]
    raw = [r for r in rows if r.step == 0.0]
    assert [b.t for b in buckets] == [0.0, 60.0, 120.0, 180.0, 240.0]
    assert all(b.count == 59 and b.min_count == 0 and b.n == 60 for b in buckets)
    assert len(raw) == 300
    # A later pass drops what is older than the horizon, buckets included.
    res2 = store.retain(now=100000.0 + 130.0, raw_for=0.0, keep_for=100000.0, bucket=60.0)
    assert res2.deleted >= 2
    assert min(r.t for r in store.samples(a)) >= 130.0 - 60.0


def test_detector_state_is_kept_latest_per_target_and_expires(store: Store) -> None:
    a = store.target_id(ProcessRef(1, 1), ("x",), 0.0)
    b = store.target_id(ProcessRef(2, 2), ("y",), 0.0)
    assert store.detector_state(a) is None
    store.save_detector_states([(a, 10.0, 5.0, b"one"), (b, 10.0, 5.0, b"bee")])
    store.save_detector_states([(a, 20.0, 15.0, b"two")])
    assert store.detector_state(a) == (20.0, 15.0, b"two")
    assert store.detector_state(b) == (10.0, 5.0, b"bee")
    store.retain(now=100015.0, raw_for=0.0, keep_for=100000.0)
    assert store.detector_state(b) is None  # saved before the horizon
    assert store.detector_state(a) == (20.0, 15.0, b"two")


def test_size_is_bounded_oldest_first(store: Store) -> None:
    a = store.target_id(ProcessRef(1, 1), ("x",), 0.0)
    for chunk in range(20):
        store.add_samples([(a, float(chunk * 5000 + i), i, 1024) for i in range(5000)])
    before = store.size_bytes()
    limit = before // 4
    deleted = store.enforce_size(limit)
    assert deleted > 0
    assert store.size_bytes() <= limit
    left = store.samples(a)
    assert left[-1].t == 99999.0  # the newest survive
    assert left[0].t > 0.0
    assert store.integrity_check() == "ok"


def test_default_path_follows_xdg() -> None:
    assert default_path({"XDG_DATA_HOME": "/x/data", "HOME": "/h"}) == Path(
        "/x/data/fdguard/fdguard.db"
    )
    assert default_path({"HOME": "/h"}) == Path("/h/.local/share/fdguard/fdguard.db")
    # A relative XDG_DATA_HOME is invalid per the spec and ignored.
    assert default_path({"XDG_DATA_HOME": "rel", "HOME": "/h"}) == Path(
        "/h/.local/share/fdguard/fdguard.db"
    )


def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    p = tmp_path / "junk.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        Store(p)
