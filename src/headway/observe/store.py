"""The host's metric store: a week of history in bounded space, in one SQLite file (WAL) under a directory.

Raw samples are kept for a day; older data survives as one-minute averages for eight days; anything older is
deleted. `compact(now)` does the rolling up and the deleting, and holds the store under its size bound by dropping
the oldest averages first (then, only if that is not enough, the oldest raw samples).

Layout (see docs/monitoring.md):

- `series`: one row per metric name and label set;
- `raw_H`: one table per hour H (hours since the epoch): (series, time in ms, value), keyed by series then time;
  an hour leaves as a whole (rolled up, then the table dropped: no row-by-row deletes);
- `rollup`: one row per series and hour, holding that hour's 60 one-minute averages and sample counts packed in a
  blob (60 rows of their own would cost several times the space);
- `meta`: `raw_cutoff`: raw samples before it are gone (and samples older than it are not taken).

Every change is one transaction and the database runs in WAL mode, so a writer killed at any point (even SIGKILL)
leaves the store as of its last commit; readers never block the writer.
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from headway.errors import HeadwayError

DB_NAME = "metrics.db"
SCHEMA_VERSION = 1
RAW_KEEP = 24 * 3600.0  # seconds raw samples are kept
ROLLUP_KEEP = 8 * 86400.0  # seconds one-minute averages are kept
DEFAULT_MAX_MB = 256.0
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
_BLOB = struct.Struct("<60d60B")  # one hour: 60 minute averages (NaN: no sample), then 60 sample counts (≤ 255)
_NAN = float("nan")

Sample = tuple[str, Mapping[str, str], float, float]  # name, labels, value, time (epoch seconds)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL,
                                   UNIQUE (name, labels));
CREATE TABLE IF NOT EXISTS rollup (h INTEGER NOT NULL, s INTEGER NOT NULL, data BLOB NOT NULL,
                                   PRIMARY KEY (h, s)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
"""
_RAW = "CREATE TABLE IF NOT EXISTS raw_{h} (s INTEGER NOT NULL, t INTEGER NOT NULL, v REAL NOT NULL, " \
       "PRIMARY KEY (s, t)) WITHOUT ROWID"


class MetricStoreError(HeadwayError):
    pass


def _labels_key(labels: Mapping[str, str]) -> str:
    return json.dumps({str(k): str(v) for k, v in labels.items()}, sort_keys=True, separators=(",", ":"))


class MetricStore:
    """Time series of one host. One writer at a time (the monitoring agent); any number of readers."""

    def __init__(self, path: str | Path, *, max_mb: float = DEFAULT_MAX_MB, raw_keep: float = RAW_KEEP,
                 rollup_keep: float = ROLLUP_KEEP) -> None:
        self.dir = Path(path)
        self.file = self.dir / DB_NAME
        self.max_bytes = int(max_mb * 1024 * 1024)
        self._data_bytes = int(self.max_bytes * 0.8)  # the rest: the WAL and free pages kept for reuse
        self.raw_keep, self.rollup_keep = raw_keep, rollup_keep
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MetricStoreError(f"cannot create the metric store directory {self.dir}: {exc.strerror}",
                                   "choose a directory the agent may write to") from None
        self._ids: dict[str, int] = {}  # canonical "name labels-json" -> series id
        self._fast: dict[tuple[object, ...], int] = {}  # (name, *labels.items()) as the caller gave them -> id
        try:
            self._db = sqlite3.connect(self.file, timeout=10.0, isolation_level=None)
            self._open()
        except sqlite3.DatabaseError as exc:
            raise MetricStoreError(f"{self.file} is not a readable metric store ({exc})",
                                   f"move {self.file} aside; a new, empty store is created in its place") from None

    def _open(self) -> None:
        db = self._db
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect only on a new file, before the first table
        if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise MetricStoreError(f"{self.file}: SQLite cannot use WAL mode here",
                                   "put the metric store on a local file system")
        db.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: a killed process loses nothing committed
        wal = max(256 * 1024, min(4 * 1024 * 1024, self.max_bytes // 10))  # the WAL's share of the bound
        db.execute(f"PRAGMA journal_size_limit={wal}")
        db.execute(f"PRAGMA wal_autocheckpoint={max(16, wal // 4096)}")
        db.execute("PRAGMA cache_size=-32768")  # 32 MiB: an hour of samples lands in one page per series
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise MetricStoreError(f"{self.file} was written by a newer headway (store version {version})",
                                   "upgrade headway on this host, or move the file aside")
        with self._tx():
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- plumbing ---------------------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            self._ids.clear()  # ids created in the rolled-back transaction do not exist
            self._fast.clear()
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every statement inside sees the same committed state, so a compaction committing
        meanwhile (dropping an hour's table) cannot pull a table from under a query."""
        self._db.execute("BEGIN")
        try:
            yield self._db
        finally:
            self._db.execute("COMMIT")

    def _meta(self, key: str) -> int | None:
        row = self._db.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))

    def _series_id(self, name: str, labels: Mapping[str, str]) -> int:
        if not name or not isinstance(name, str):
            raise ValueError(f"a metric needs a name (got {name!r})")
        text = _labels_key(labels)
        sid = self._ids.get(f"{name} {text}")
        if sid is None:
            self._db.execute("INSERT OR IGNORE INTO series (name, labels) VALUES (?, ?)", (name, text))
            sid = int(self._db.execute("SELECT id FROM series WHERE name=? AND labels=?", (name, text)).fetchone()[0])
            self._ids[f"{name} {text}"] = sid
        return sid

    def _match(self, name: str, labels_match: Mapping[str, str] | None) -> list[int]:
        want = {str(k): str(v) for k, v in (labels_match or {}).items()}
        out = []
        for sid, text in self._db.execute("SELECT id, labels FROM series WHERE name=?", (name,)):
            labels = json.loads(text)
            if all(labels.get(k) == v for k, v in want.items()):
                out.append(int(sid))
        return out

    def _raw_hours(self) -> list[int]:
        """Hours (since the epoch) that have a table of raw samples, oldest first."""
        return sorted(int(r[0][4:]) for r in
                      self._db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name GLOB 'raw_*'"))

    # -- writing ----------------------------------------------------------------------------------------------

    def add(self, samples: Iterable[Sample]) -> int:
        """Store samples (name, labels, value, time); one transaction. A sample for a time already stored replaces
        it; NaN and infinite values, and samples older than the raw data kept, are skipped. Returns how many were
        stored."""
        with self._tx() as db:
            cutoff = self._meta("raw_cutoff") or 0
            fast, isfinite = self._fast, math.isfinite
            by_hour: dict[int, list[tuple[int, int, float]]] = {}
            hour, rows = -1, []
            for name, labels, value, t in samples:
                v, ms = float(value), int(t * 1000)
                if ms < cutoff or not isfinite(v):
                    continue
                sid = fast.get((name, *labels.items()))  # the same labels in the same order: no sorting
                if sid is None:
                    sid = fast[(name, *labels.items())] = self._series_id(name, labels)
                if ms // HOUR_MS != hour:
                    hour = ms // HOUR_MS
                    rows = by_hour.setdefault(hour, [])
                rows.append((sid, ms, v))
            known = set(self._raw_hours())
            for h, hour_rows in by_hour.items():
                if h not in known:
                    db.execute(_RAW.format(h=h))
                hour_rows.sort()  # in key order: each series' new rows land together, in as few pages as possible
                db.executemany(f"INSERT OR REPLACE INTO raw_{h} (s, t, v) VALUES (?, ?, ?)", hour_rows)
        if self._used_bytes() > self._data_bytes:
            with self._tx():
                self._enforce_bound()
            self._shrink()
        return sum(len(r) for r in by_hour.values())

    def compact(self, now: float) -> None:
        """Turn each hour of raw samples older than a day into one-minute averages (in the same transaction that
        deletes the raw hour), delete averages older than eight days, and hold the store under its size bound.
        Safe to run at any time, and cheap when there is little to do (the agent runs it every few minutes)."""
        now_ms = int(now * 1000)
        raw_cut = (now_ms - int(self.raw_keep * 1000)) // HOUR_MS  # raw hours before this one go
        with self._tx() as db:
            for h in self._raw_hours():
                if h < raw_cut:
                    self._roll_up(h)
                    db.execute(f"DROP TABLE raw_{h}")
            if raw_cut * HOUR_MS > (self._meta("raw_cutoff") or 0):
                self._set_meta("raw_cutoff", raw_cut * HOUR_MS)
            db.execute("DELETE FROM rollup WHERE h<?", ((now_ms - int(self.rollup_keep * 1000)) // HOUR_MS,))
            self._enforce_bound()
        self._shrink()

    def _roll_up(self, h: int) -> None:
        """One hour of raw samples into one row per series: its 60 minute averages and sample counts."""
        db = self._db
        pack, out = _BLOB.pack, []
        sid, avgs, counts = -1, [_NAN] * 60, [0] * 60
        for s, minute, avg, n in db.execute(
                f"SELECT s, t / 60000, AVG(v), COUNT(*) FROM raw_{h} WHERE t>=? AND t<? GROUP BY s, t / 60000",
                (h * HOUR_MS, (h + 1) * HOUR_MS)):
            if s != sid:
                if sid >= 0:
                    out.append((h, sid, pack(*avgs, *counts)))
                sid, avgs, counts = s, [_NAN] * 60, [0] * 60
            i = minute % 60
            avgs[i] = avg
            counts[i] = n if n < 256 else 255
        if sid >= 0:
            out.append((h, sid, pack(*avgs, *counts)))
        db.executemany("INSERT OR REPLACE INTO rollup (h, s, data) VALUES (?, ?, ?)", out)

    def _used_bytes(self) -> int:
        db = self._db
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages * db.execute("PRAGMA page_size").fetchone()[0])

    def _enforce_bound(self) -> None:
        """Inside a transaction: drop the oldest hours of averages (then of raw samples) until under the bound."""
        db = self._db
        for _ in range(1000):  # each round drops at least one hour; 8 days + 1 day of hours is 216
            excess = self._used_bytes() - self._data_bytes
            if excess <= 0:
                return
            oldest = db.execute("SELECT MIN(h) FROM rollup").fetchone()[0]
            if oldest is not None:
                per_hour = max(1, db.execute("SELECT COUNT(*) FROM rollup WHERE h=?", (oldest,)).fetchone()[0]
                               * (_BLOB.size + 8))
                db.execute("DELETE FROM rollup WHERE h<?", (int(oldest) + max(1, math.ceil(excess / per_hour)),))
                continue
            hours = self._raw_hours()
            if not hours:
                return
            db.execute(f"DROP TABLE raw_{hours[0]}")
            self._set_meta("raw_cutoff", max((hours[0] + 1) * HOUR_MS, self._meta("raw_cutoff") or 0))

    def _shrink(self) -> None:
        """Give freed pages back to the file system once they are many; a few are kept for the next hour's data."""
        db = self._db
        free = db.execute("PRAGMA freelist_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0]
        if free > min(8 * 1024 * 1024, self.max_bytes // 20, max(self._used_bytes() // 10, 256 * 1024)):
            db.execute("PRAGMA incremental_vacuum")
        if self.size_bytes() > self.max_bytes:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- reading ----------------------------------------------------------------------------------------------

    def series(self, name: str, labels_match: Mapping[str, str] | None, since: float, until: float,
               step: float) -> list[tuple[float, float]]:
        """(bucket start, average) for each `step`-second bucket in [since, until) that has data, oldest first.
        Buckets are aligned to multiples of `step` since the epoch; the average is over every sample (or
        one-minute average, weighted by its samples) of every series of `name` whose labels include
        `labels_match`. Raw samples are used where they are kept, one-minute averages before that."""
        with self._snapshot():
            return self._series(name, labels_match, since, until, step)

    def _series(self, name: str, labels_match: Mapping[str, str] | None, since: float, until: float,
                step: float) -> list[tuple[float, float]]:
        step_ms = max(1, int(round(step * 1000)))
        lo, hi = int(since * 1000), int(until * 1000)
        ids = self._match(name, labels_match)
        if not ids or lo >= hi:
            return []
        sums: dict[int, list[float]] = {}
        db = self._db
        marks = ",".join("?" * len(ids))
        cutoff = self._meta("raw_cutoff") or 0
        raw_lo = max(lo, cutoff)
        for h in self._raw_hours():
            if raw_lo < (h + 1) * HOUR_MS and h * HOUR_MS < hi:
                for b, total, n in db.execute(
                        f"SELECT t / ?, SUM(v), COUNT(*) FROM raw_{h} WHERE s IN ({marks}) AND t>=? AND t<? "
                        "GROUP BY 1", (step_ms, *ids, raw_lo, hi)):
                    acc = sums.setdefault(int(b), [0.0, 0])
                    acc[0] += total
                    acc[1] += n
        roll_hi = min(hi, cutoff)
        if lo < roll_hi:
            for h, data in db.execute(f"SELECT h, data FROM rollup WHERE h>=? AND h<=? AND s IN ({marks})",
                                      (lo // HOUR_MS, (roll_hi - 1) // HOUR_MS, *ids)):
                values = _BLOB.unpack(data)
                base = int(h) * HOUR_MS
                for i in range(60):
                    n = values[60 + i]
                    t = base + i * MINUTE_MS
                    if n and lo <= t < roll_hi:
                        acc = sums.setdefault(t // step_ms, [0.0, 0])
                        acc[0] += values[i] * n
                        acc[1] += n
        return [(b * step_ms / 1000, total / n) for b, (total, n) in sorted(sums.items())]

    def latest(self, name: str, labels_match: Mapping[str, str] | None = None) -> tuple[float, float] | None:
        """The newest (time, value) of any series of `name` whose labels include `labels_match`; None if there is
        none. Falls back to the newest one-minute average when no raw sample is kept."""
        with self._snapshot():
            return self._latest(name, labels_match)

    def _latest(self, name: str, labels_match: Mapping[str, str] | None) -> tuple[float, float] | None:
        ids = self._match(name, labels_match)
        if not ids:
            return None
        db = self._db
        marks = ",".join("?" * len(ids))
        for h in reversed(self._raw_hours()):
            row = db.execute(f"SELECT t, v FROM raw_{h} WHERE s IN ({marks}) ORDER BY t DESC LIMIT 1",
                             ids).fetchone()
            if row is not None:
                return int(row[0]) / 1000, float(row[1])
        best: tuple[int, float] | None = None
        newest = db.execute(f"SELECT MAX(h) FROM rollup WHERE s IN ({marks})", ids).fetchone()[0]
        for (data,) in db.execute(f"SELECT data FROM rollup WHERE h=? AND s IN ({marks})", (newest, *ids)):
            values = _BLOB.unpack(data)
            for i in range(59, -1, -1):
                if values[60 + i]:
                    t = int(newest) * HOUR_MS + i * MINUTE_MS
                    if best is None or t > best[0]:
                        best = (t, values[i])
                    break
        return None if best is None else (best[0] / 1000, best[1])

    def labels(self, name: str) -> list[dict[str, str]]:
        """The label sets stored for a metric name (e.g. every queue of an environment)."""
        with self._snapshot() as db:
            return [json.loads(r[0]) for r in db.execute("SELECT labels FROM series WHERE name=? ORDER BY id",
                                                         (name,))]

    def size_bytes(self) -> int:
        """Bytes on disk: the database file and its write-ahead log."""
        return sum(p.stat().st_size for p in (self.file, self.file.with_name(DB_NAME + "-wal")) if p.exists())

    def check(self) -> str:
        """SQLite's quick integrity check: "ok" when the file is sound."""
        return str(self._db.execute("PRAGMA quick_check").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> MetricStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
