"""The embedded time-series store: fd counts, by-kind snapshots, alerts and events in SQLite.

Design:
- One SQLite file in WAL mode with `synchronous=NORMAL`. In WAL mode a committed
  transaction is in the WAL file before COMMIT returns; NORMAL only skips the
  fsync, which matters for power loss, not for a process killed with -9. The
  watcher commits once per interval, so kill -9 loses at most the interval being
  written, and the database is never left corrupt (SQLite's own journal
  recovery replays or discards the WAL tail on the next open).
- A target is a process identity (PID + start time, `ProcessRef`): a restarted
  service is a new target row, so its series never mixes with the old one; a
  `restart` event links them.
- Samples are raw (`step` 0) until retention folds them into buckets of `step`
  seconds keeping the bucket's max (the number that matters for exhaustion),
  min and sample count; buckets older than the horizon are dropped.
- The file has a bounded size: `enforce_size` drops the oldest samples first
  (then the oldest snapshot counts) and returns pages to the filesystem with
  incremental vacuum (auto_vacuum=INCREMENTAL is set at creation).
- Single writer: one `Store` per process, guarded by a lock, so the exporter's
  HTTP thread and the watch loop may share it. Readers in other processes (`fdguard
  history` while `fdguard watch` runs) are fine: WAL lets them read while one writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fdguard.errors import StoreError
from fdguard.model import ProcessRef

SCHEMA_VERSION = 1

# 256 MiB: about 10 years of 1 Hz samples of one process after downsampling, or
# a few days of raw samples of a thousand; big enough to never bite by accident.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS targets (
    id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    start_time INTEGER NOT NULL,
    command TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    UNIQUE (pid, start_time)
);
CREATE TABLE IF NOT EXISTS samples (
    target_id INTEGER NOT NULL REFERENCES targets(id),
    t REAL NOT NULL,
    count INTEGER NOT NULL,
    soft_limit INTEGER,
    step REAL NOT NULL DEFAULT 0,
    min_count INTEGER,
    n INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS samples_by_target ON samples (target_id, t);
CREATE INDEX IF NOT EXISTS samples_by_time ON samples (step, t);
CREATE TABLE IF NOT EXISTS kind_counts (
    target_id INTEGER NOT NULL REFERENCES targets(id),
    t REAL NOT NULL,
    dim TEXT NOT NULL,
    name TEXT NOT NULL,
    n INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kind_counts_by_target ON kind_counts (target_id, t);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    target_id INTEGER REFERENCES targets(id),
    t REAL NOT NULL,
    rule TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_target ON alerts (target_id, t);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    target_id INTEGER REFERENCES targets(id),
    t REAL NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_target ON events (target_id, t);
-- The leak detector's own state per target, so a restarted watch goes on judging
-- (additive: a store written before it gains the table on open).
CREATE TABLE IF NOT EXISTS detector_states (
    target_id INTEGER PRIMARY KEY REFERENCES targets(id),
    t REAL NOT NULL,
    mono REAL NOT NULL,
    state BLOB NOT NULL
);
"""


def default_path(env: Mapping[str, str] | None = None) -> Path:
    """The per-user store: $XDG_DATA_HOME/fdguard/fdguard.db, else ~/.local/share/fdguard/."""
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or ""
    # The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
    if not base or not os.path.isabs(base):
        home = env.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".local", "share")
    return Path(base) / "fdguard" / "fdguard.db"


@dataclass(frozen=True, slots=True)
class StoredTarget:
    """One followed process (PID + start time) as recorded in the store."""

    id: int
    ref: ProcessRef
    command: tuple[str, ...]
    label: str
    first_seen: float
    last_seen: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pid": self.ref.pid,
            "start_time": self.ref.start_time,
            "command": list(self.command),
            "label": self.label,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }


@dataclass(frozen=True, slots=True)
class StoredSample:
    """One fd count; `step` > 0 marks a downsampled bucket (count = its max)."""

    t: float
    count: int
    soft_limit: int | None
    step: float = 0.0
    min_count: int | None = None
    n: int = 1


@dataclass(frozen=True, slots=True)
class KindCount:
    """How many fds of one kind (dim "kind") or TCP state (dim "tcp_state") at time t."""

    t: float
    dim: str
    name: str
    n: int


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An alert transition (firing or resolved) as recorded."""

    t: float
    target_id: int | None
    rule: str
    state: str
    severity: str
    message: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A lifecycle event of a target: start, exit, restart, limit_change."""

    t: float
    target_id: int | None
    type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """What one retention pass did."""

    downsampled: int
    buckets_written: int
    deleted: int


class Store:
    """A SQLite time-series store (see the module comment for the guarantees).

    Raises:
        StoreError: the file cannot be created, opened, or is not an fdguard store.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        self._ids: dict[ProcessRef, int] = {}
        self._depth = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per interval.
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"cannot open store {self.path}: {err}") from err
        try:
            self._init()
        except sqlite3.Error as err:
            self._db.close()
            raise StoreError(f"cannot use store {self.path}: {err}") from err

    def _init(self) -> None:
        db = self._db
        # auto_vacuum only takes effect before the first table exists.
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"store {self.path}: cannot switch to WAL (got {mode})")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} has schema {row[0]}, this fdguard reads {SCHEMA_VERSION}"
            )

    # -- lifecycle --------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            # A reader may hold the WAL: then the next open checkpoints it.
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one commit (the watcher uses one per interval). Re-entrant."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                self._db.execute("ROLLBACK")
                raise
            self._depth = 0
            self._db.execute("COMMIT")

    def _exec(self, sql: str, args: tuple[Any, ...] | dict[str, Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, args)
            except sqlite3.Error as err:
                raise StoreError(f"store {self.path}: {err}") from err

    # -- writing ----------------------------------------------------------------

    def target_id(
        self, ref: ProcessRef, command: tuple[str, ...], t: float, label: str = ""
    ) -> int:
        """The row id of the target `ref`, created on first sight."""
        cached = self._ids.get(ref)
        if cached is not None:
            return cached
        with self._lock:
            row = self._exec(
                "SELECT id FROM targets WHERE pid=? AND start_time=?", (ref.pid, ref.start_time)
            ).fetchone()
            if row is None:
                cur = self._exec(
                    "INSERT INTO targets(pid, start_time, command, label, first_seen, last_seen)"
                    " VALUES (?,?,?,?,?,?)",
                    (ref.pid, ref.start_time, json.dumps(list(command)), label, t, t),
                )
                tid = int(cur.lastrowid or 0)
            else:
                tid = int(row[0])
        self._ids[ref] = tid
        return tid

    def add_samples(self, rows: Iterable[tuple[int, float, int, int | None]]) -> None:
        """Record raw samples: (target_id, t, count, soft_limit) each."""
        with self._lock:
            rows = list(rows)
            try:
                self._db.executemany(
                    "INSERT INTO samples(target_id, t, count, soft_limit) VALUES (?,?,?,?)", rows
                )
                last: dict[int, float] = {}
                for tid, t, _c, _s in rows:
                    last[tid] = max(t, last.get(tid, t))
                self._db.executemany(
                    "UPDATE targets SET last_seen=? WHERE id=?",
                    [(t, tid) for tid, t in last.items()],
                )
            except sqlite3.Error as err:
                raise StoreError(f"store {self.path}: {err}") from err

    def save_detector_states(self, rows: Iterable[tuple[int, float, float, bytes]]) -> None:
        """Keep the latest detector state per target: (target_id, wall t, monotonic t
        of the saving clock, state bytes) each, replacing the previous one."""
        with self.transaction():
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO detector_states(target_id, t, mono, state)"
                    " VALUES (?,?,?,?)",
                    list(rows),
                )
            except sqlite3.Error as err:
                raise StoreError(f"store {self.path}: {err}") from err

    def detector_state(self, target_id: int) -> tuple[float, float, bytes] | None:
        """The latest saved detector state of a target: (wall t, monotonic t, bytes)."""
        row = self._exec(
            "SELECT t, mono, state FROM detector_states WHERE target_id=?", (target_id,)
        ).fetchone()
        return None if row is None else (float(row[0]), float(row[1]), bytes(row[2]))

    def add_sample(self, target_id: int, t: float, count: int, soft_limit: int | None) -> None:
        self.add_samples([(target_id, t, count, soft_limit)])

    def add_kind_counts(
        self,
        target_id: int,
        t: float,
        by_kind: Mapping[str, int],
        by_tcp_state: Mapping[str, int] | None = None,
    ) -> None:
        """Record the breakdown of one full snapshot."""
        rows = [(target_id, t, "kind", k, n) for k, n in by_kind.items()]
        rows += [(target_id, t, "tcp_state", k, n) for k, n in (by_tcp_state or {}).items()]
        with self._lock:
            try:
                self._db.executemany(
                    "INSERT INTO kind_counts(target_id, t, dim, name, n) VALUES (?,?,?,?,?)", rows
                )
            except sqlite3.Error as err:
                raise StoreError(f"store {self.path}: {err}") from err

    def add_alert(
        self,
        target_id: int | None,
        t: float,
        *,
        rule: str,
        state: str,
        severity: str,
        message: str,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        self._exec(
            "INSERT INTO alerts(target_id, t, rule, state, severity, message, data)"
            " VALUES (?,?,?,?,?,?,?)",
            (target_id, t, rule, state, severity, message, json.dumps(dict(data or {}))),
        )

    def add_event(
        self, target_id: int | None, t: float, type_: str, data: Mapping[str, Any] | None = None
    ) -> None:
        self._exec(
            "INSERT INTO events(target_id, t, type, data) VALUES (?,?,?,?)",
            (target_id, t, type_, json.dumps(dict(data or {}))),
        )

    # -- reading ----------------------------------------------------------------

    def targets(self) -> list[StoredTarget]:
        rows = self._exec(
            "SELECT id, pid, start_time, command, label, first_seen, last_seen"
            " FROM targets ORDER BY first_seen, id"
        ).fetchall()
        return [
            StoredTarget(
                id=r[0],
                ref=ProcessRef(r[1], r[2]),
                command=tuple(json.loads(r[3])),
                label=r[4],
                first_seen=r[5],
                last_seen=r[6],
            )
            for r in rows
        ]

    def samples(
        self, target_id: int, *, since: float | None = None, until: float | None = None
    ) -> list[StoredSample]:
        rows = self._exec(
            "SELECT t, count, soft_limit, step, min_count, n FROM samples WHERE target_id=?"
            " AND t >= ? AND t <= ? ORDER BY t",
            (target_id, -1e300 if since is None else since, 1e300 if until is None else until),
        ).fetchall()
        return [StoredSample(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def kind_counts(self, target_id: int) -> list[KindCount]:
        rows = self._exec(
            "SELECT t, dim, name, n FROM kind_counts WHERE target_id=? ORDER BY t, dim, name",
            (target_id,),
        ).fetchall()
        return [KindCount(*r) for r in rows]

    def alerts(self, target_id: int | None = None) -> list[AlertRecord]:
        sql = "SELECT t, target_id, rule, state, severity, message, data FROM alerts"
        args: tuple[Any, ...] = ()
        if target_id is not None:
            sql += " WHERE target_id=?"
            args = (target_id,)
        rows = self._exec(sql + " ORDER BY t, id", args).fetchall()
        return [AlertRecord(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def events(self, target_id: int | None = None) -> list[EventRecord]:
        sql = "SELECT t, target_id, type, data FROM events"
        args: tuple[Any, ...] = ()
        if target_id is not None:
            sql += " WHERE target_id=?"
            args = (target_id,)
        rows = self._exec(sql + " ORDER BY t, id", args).fetchall()
        return [EventRecord(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def sample_count(self) -> int:
        return int(self._exec("SELECT COUNT(*) FROM samples").fetchone()[0])

    def integrity_check(self) -> str:
        """SQLite's own integrity check: "ok" when the file is sound."""
        return "; ".join(str(r[0]) for r in self._exec("PRAGMA integrity_check").fetchall())

    def size_bytes(self) -> int:
        """Bytes used by the database pages (excluding free pages and the WAL)."""
        pages = int(self._exec("PRAGMA page_count").fetchone()[0])
        free = int(self._exec("PRAGMA freelist_count").fetchone()[0])
        size = int(self._exec("PRAGMA page_size").fetchone()[0])
        return (pages - free) * size

    # -- retention ----------------------------------------------------------------

    def retain(
        self,
        now: float,
        *,
        raw_for: float = 6 * 3600.0,
        keep_for: float = 90 * 86400.0,
        bucket: float = 60.0,
    ) -> RetentionResult:
        """Downsample raw samples older than `raw_for` into `bucket`-second buckets
        (max, min, count kept) and delete everything older than `keep_for`."""
        if bucket <= 0 or raw_for < 0 or keep_for < raw_for:
            raise ValueError("need bucket > 0 and 0 <= raw_for <= keep_for")
        cutoff = now - raw_for
        # Only whole buckets are folded, so a bucket is never written twice.
        cutoff -= cutoff % bucket
        horizon = now - keep_for
        with self.transaction():
            folded = int(
                self._exec(
                    "SELECT COUNT(*) FROM samples WHERE step=0 AND t < ?", (cutoff,)
                ).fetchone()[0]
            )
            cur = self._exec(
                "INSERT INTO samples(target_id, t, count, soft_limit, step, min_count, n)"
                " SELECT target_id, CAST(t / :b AS INTEGER) * :b AS bt, MAX(count),"
                " MAX(soft_limit), :b, MIN(count), COUNT(*)"
                " FROM samples WHERE step=0 AND t < :c GROUP BY target_id, bt",
                {"b": bucket, "c": cutoff},
            )
            written = cur.rowcount
            self._exec("DELETE FROM samples WHERE step=0 AND t < ?", (cutoff,))
            deleted = self._exec("DELETE FROM samples WHERE t < ?", (horizon,)).rowcount
            self._exec("DELETE FROM kind_counts WHERE t < ?", (horizon,))
            self._exec("DELETE FROM alerts WHERE t < ?", (horizon,))
            self._exec("DELETE FROM events WHERE t < ?", (horizon,))
            self._exec("DELETE FROM detector_states WHERE t < ?", (horizon,))
            self._exec(
                "DELETE FROM targets WHERE last_seen < ? AND id NOT IN"
                " (SELECT target_id FROM samples)"
                " AND id NOT IN (SELECT target_id FROM detector_states)",
                (horizon,),
            )
        self._ids.clear()
        return RetentionResult(downsampled=folded, buckets_written=written, deleted=deleted)

    def enforce_size(self, max_bytes: int | None = None, *, batch: int = 5000) -> int:
        """Delete the oldest samples (then snapshot counts) until the data fits in
        `max_bytes`; return the number of rows deleted. Freed pages go back to the OS."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        deleted = 0
        while self.size_bytes() > limit:
            with self.transaction():
                n = self._exec(
                    "DELETE FROM samples WHERE rowid IN"
                    " (SELECT rowid FROM samples ORDER BY t LIMIT ?)",
                    (batch,),
                ).rowcount
                if n == 0:
                    n = self._exec(
                        "DELETE FROM kind_counts WHERE rowid IN"
                        " (SELECT rowid FROM kind_counts ORDER BY t LIMIT ?)",
                        (batch,),
                    ).rowcount
            if n == 0:
                break
            deleted += n
        if deleted:
            self._exec("PRAGMA incremental_vacuum")
        return deleted
