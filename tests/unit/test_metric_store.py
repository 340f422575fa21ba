"""The host's metric store: queries, rollups and retention, the size bound, a writer killed with SIGKILL, and the
space a week of one host's metrics takes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from headway.observe.store import DB_NAME, MetricStore, MetricStoreError

H = 3600
T0 = 1_700_000_000 // H * H  # an hour boundary
WEB = {"app": "shop", "environment": "production", "role": "web"}


def test_series_average_into_steps_and_match_labels(tmp_path: Path) -> None:
    s = MetricStore(tmp_path)
    s.add([("cpu", WEB, v, T0 + i * 15) for i, v in enumerate([10, 20, 30, 40, 50, 60, 70, 80])])
    s.add([("cpu", {**WEB, "role": "worker"}, 100.0, T0 + i * 15) for i in range(8)])
    assert s.series("cpu", {"role": "web"}, T0, T0 + 120, 60) == [(T0, 25.0), (T0 + 60, 65.0)]
    assert s.series("cpu", {"role": "web"}, T0, T0 + 120, 30) == [(T0, 15.0), (T0 + 30, 35.0), (T0 + 60, 55.0),
                                                                  (T0 + 90, 75.0)]
    # several series match: one average over all of their samples
    assert s.series("cpu", {"environment": "production"}, T0, T0 + 60, 60) == [(T0, 62.5)]
    assert s.series("cpu", {"role": "web"}, T0 + 30, T0 + 75, 60) == [(T0, 35.0), (T0 + 60, 50.0)]  # [since, until)
    assert s.series("cpu", {"role": "db"}, T0, T0 + 120, 60) == []
    assert s.series("memory", None, T0, T0 + 120, 60) == []
    assert s.latest("cpu", {"role": "web"}) == (T0 + 105, 80.0)
    assert s.latest("cpu", {"role": "db"}) is None
    assert {"role": "worker", "app": "shop", "environment": "production"} in s.labels("cpu")


def test_a_sample_at_the_same_time_replaces_and_bad_values_are_skipped(tmp_path: Path) -> None:
    s = MetricStore(tmp_path)
    assert s.add([("q", {}, 1.0, T0), ("q", {}, 2.0, T0), ("q", {}, float("nan"), T0 + 1),
                  ("q", {}, float("inf"), T0 + 2)]) == 2
    assert s.series("q", {}, T0, T0 + 60, 60) == [(T0, 2.0)]


def test_labels_in_any_order_are_one_series(tmp_path: Path) -> None:
    s = MetricStore(tmp_path)
    s.add([("cpu", {"a": "1", "b": "2"}, 10.0, T0), ("cpu", {"b": "2", "a": "1"}, 30.0, T0 + 15)])
    assert s.labels("cpu") == [{"a": "1", "b": "2"}]
    again = MetricStore(tmp_path)  # a second connection (a reader, or the agent restarted) finds the same series
    again.add([("cpu", {"b": "2", "a": "1"}, 50.0, T0 + 30)])
    assert s.series("cpu", {"a": "1"}, T0, T0 + 60, 60) == [(T0, 30.0)]


def test_compact_keeps_raw_a_day_then_minute_averages_for_eight_days(tmp_path: Path) -> None:
    s = MetricStore(tmp_path)
    # two days and an hour of samples every 15s: 0, 1, 2, 3 within each minute, so each minute averages 1.5 + its
    # minute number
    for h in range(49):
        s.add([("load", WEB, (i // 4) + (i % 4), T0 + h * H + i * 15) for i in range(240)])
        s.compact(T0 + (h + 1) * H)
    end = T0 + 49 * H
    # the last day is raw: 15s buckets hold single samples
    assert s.series("load", WEB, end - 60, end, 15) == [(end - 60 + k * 15, 59.0 + k) for k in range(4)]
    # the first day is gone as raw, kept as one-minute averages (at 15s steps too: one bucket per minute)
    assert s.series("load", WEB, T0, T0 + 120, 15) == [(T0, 1.5), (T0 + 60, 2.5)]
    assert s.series("load", WEB, T0, T0 + H, H) == [(T0, 31.0)]
    # a query across the boundary uses both and gives the same answer either side
    assert len(s.series("load", WEB, T0, end, 60)) == 49 * 60
    hours = [t for t, _ in s.series("load", WEB, T0, end, H)]
    assert hours == [T0 + h * H for h in range(49)]
    assert s.series("load", WEB, T0, end, H)[0][1] == s.series("load", WEB, end - H, end, H)[0][1]
    tables = [r[0] for r in s._db.execute("SELECT name FROM sqlite_master WHERE name GLOB 'raw_*'")]
    assert 24 <= len(tables) <= 25  # a day of hours, and the hour being written
    # eight days after the first hour: it is deleted, later ones are kept
    s.compact(T0 + 8 * 86400 + H + 1)
    assert s.series("load", WEB, T0, T0 + H, 60) == []
    assert len(s.series("load", WEB, T0 + H, T0 + 2 * H, 60)) == 60
    # and later still, everything is gone
    s.compact(end + 8 * 86400 + H)
    assert s.series("load", WEB, T0, end, 60) == [] and s.latest("load", WEB) is None


def test_latest_falls_back_to_the_newest_minute_average(tmp_path: Path) -> None:
    s = MetricStore(tmp_path)
    s.add([("up", WEB, 1.0, T0 + 10), ("up", WEB, 0.0, T0 + 70), ("up", WEB, 1.0, T0 + 75)])
    s.compact(T0 + 30 * H)
    assert s.latest("up", WEB) == (T0 + 60, 0.5)


def test_a_late_sample_is_in_its_hours_averages(tmp_path: Path) -> None:
    s = MetricStore(tmp_path)
    s.add([("x", {}, 10.0, T0 + 5)])
    s.compact(T0 + 2 * H)
    s.add([("x", {}, 30.0, T0 + 35)])  # arrives late, while its hour is still raw
    s.compact(T0 + 26 * H)  # the raw hour is gone now
    assert s.series("x", {}, T0, T0 + 60, 60) == [(T0, 20.0)]


def test_samples_older_than_the_raw_kept_are_skipped(tmp_path: Path) -> None:
    s = MetricStore(tmp_path)
    s.add([("x", {}, 1.0, T0 + 30 * H)])
    s.compact(T0 + 30 * H)
    assert s.add([("x", {}, 5.0, T0)]) == 0
    assert s.series("x", {}, T0, T0 + H, 60) == []


def test_the_size_bound_drops_the_oldest_averages_first(tmp_path: Path) -> None:
    s = MetricStore(tmp_path, max_mb=2)
    labels = [{"n": str(i)} for i in range(40)]
    for h in range(72):  # three days, 40 series at one sample a minute: ~5 MB unbounded
        s.add([("m", lb, float(h), T0 + h * H + m * 60) for m in range(60) for lb in labels])
        s.compact(T0 + (h + 1) * H)
        assert s.size_bytes() <= 2.3 * 1024 * 1024, f"hour {h}: {s.size_bytes()} bytes"
    end = T0 + 72 * H
    assert s.series("m", {}, end - H, end, H) == [(end - H, 71.0)]  # the newest raw hour is all there
    kept = [t for t, _ in s.series("m", {}, T0, end, H)]
    assert kept == list(range(int(kept[0]), end, H)), "what is kept is the newest, without holes"
    assert kept[0] > T0 + 24 * H, "the oldest averages went"
    assert kept[0] < end - 24 * H, "some averages were kept: raw samples are dropped only when no average is left"


def test_the_bound_holds_without_compact_dropping_raw_when_nothing_else_is_left(tmp_path: Path) -> None:
    s = MetricStore(tmp_path, max_mb=1)
    for h in range(6):  # raw only (never compacted): 150 series at 15s, ~1 MB an hour
        s.add([("m", {"n": str(i)}, 1.0, T0 + h * H + k * 15) for k in range(240) for i in range(150)])
    assert s.size_bytes() <= 1.3 * 1024 * 1024
    assert s.latest("m", {"n": "3"}) == (T0 + 6 * H - 15, 1.0)


def test_a_file_that_is_not_a_store_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(MetricStoreError) as err:
        MetricStore(tmp_path)
    assert "is not a readable metric store" in str(err.value) and "move" in str(err.value)


WRITER = """
import sys
from headway.observe.store import MetricStore
# a minute per batch and raw samples kept 10 minutes: an hour is rolled up and dropped every 60 batches
store, start = MetricStore(sys.argv[1], raw_keep=600), int(sys.argv[2])
for i in range(int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000):
    t = start + i * 60
    store.add([("m", {"k": str(j)}, float(i), t) for j in range(200)])
    if i % 2 == 0:
        store.compact(t)
    print(i, flush=True)
"""


def test_a_writer_killed_with_sigkill_leaves_a_readable_store(tmp_path: Path) -> None:
    """Eight writers in turn, each killed (SIGKILL) mid-loop at a different point, while adding, rolling up or
    dropping an hour; every batch a writer reported as written is there (as raw samples or as minute averages),
    the file passes SQLite's check, and the next writer carries on."""
    rnd = random.Random(3)
    start = T0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    for round_ in range(8):
        lines = rnd.randrange(60, 400)
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(start)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        last, deadline = -1, time.monotonic() + 60
        while last < lines and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            last = int(line)
        # the writer is mid-loop; let it run on for 0-20 ms (this waits for nothing: it varies where the kill lands)
        jitter = time.monotonic() + rnd.uniform(0, 0.02)
        while time.monotonic() < jitter:
            pass
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert last >= lines, f"round {round_}: the writer got to batch {last} only"
        last = max([last, *(int(x) for x in rest.split())])  # the lines it printed before it died

        s = MetricStore(tmp_path)
        assert s.check() == "ok"
        newest = s.latest("m", {"k": "39"})
        assert newest is not None and newest[1] >= last, f"batch {last} was reported written, newest is {newest}"
        assert newest[0] == start + newest[1] * 60
        whole = s.series("m", {"k": "0"}, start, newest[0] + 1, 60)
        assert [v for _, v in whole] == [float(i) for i in range(int(newest[1]) + 1)]
        start = int(newest[0]) + 60
        s.close()
    s = MetricStore(tmp_path)
    assert s._db.execute("SELECT COUNT(*) FROM rollup").fetchone()[0] > 0  # hours were rolled up on the way
    s.add([("m", {"k": "0"}, -1.0, start)])
    s.compact(start + 1)
    assert s.check() == "ok" and s.latest("m", {"k": "0"}) == (start, -1.0)


def test_readers_never_wait_for_the_writer_nor_see_half_a_compaction(tmp_path: Path) -> None:
    """Queries in this process while another one adds and compacts (an hour table dropped every 60 batches)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    MetricStore(tmp_path).close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(T0), "400"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    reader = MetricStore(tmp_path)
    queries, deadline = 0, time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        points = reader.series("m", {"k": "7"}, T0, T0 + 400 * 60, 60)
        assert [v for _, v in points] == [float(i) for i in range(len(points))]  # whole, in order, no holes
        reader.latest("m", {"k": "7"})
        queries += 1
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert queries > 10
    assert len(reader.series("m", {"k": "7"}, T0, T0 + 400 * 60, 60)) == 400


def test_a_week_of_a_hosts_metrics_stays_under_72_mib() -> None:
    """10 environments x 30 series, one sample every 15 s, for 8 days, compacted every hour as the agent does.

    The samples of the first seven days are given one a minute: those days are kept only as one-minute averages,
    and an hour's row of averages has the same size whether 1 or 4 samples went into each minute, so the store
    is the same while the test inserts 4.8 million samples instead of 13.8 million. The peak is measured just
    before each compaction (25 hours of raw samples and 8 days of averages)."""
    root = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # a RAM disk: the same bytes, no fsync waits
    import tempfile

    with tempfile.TemporaryDirectory(dir=root) as tmp:
        s = MetricStore(tmp)
        series = [(f"metric_{n}", {"app": f"app{e // 2}", "environment": f"env{e}"}) for e in range(10)
                  for n in range(30)]
        rnd = random.Random(7)
        noise = [rnd.random() * 100 for _ in range(4096)]
        end = T0 + 8 * 86400
        peak, hour = 0, T0
        while hour < end:
            step = 15 if hour >= end - 25 * H else 60
            batch = []
            for t in range(hour, hour + H, step):
                j = t // 15
                for i, (name, labels) in enumerate(series):  # a third constant, a third whole numbers, a third noise
                    v = 1.0 if i % 3 == 0 else float(j % 997) if i % 3 == 1 else noise[(j + i) & 4095]
                    batch.append((name, labels, v, t))
            s.add(batch)
            peak = max(peak, s.size_bytes())
            hour += H
            s.compact(hour)
        mib = peak / 2**20
        print(f"\nmetric store, 300 series x 8 days: peak {mib:.1f} MiB, after compaction "
              f"{s.size_bytes() / 2**20:.1f} MiB")
        assert mib < 72
        assert len(s.series("metric_2", {"environment": "env3"}, T0, end, H)) == 8 * 24
        assert s.latest("metric_1", {"environment": "env9"}) == (end - 15, float(((end - 15) // 15) % 997))
        s.close()
