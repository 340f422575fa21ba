"""Request metrics from the proxy's access log: parsing, the tail, counters, windows, exposition and the endpoint."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
import time
import tracemalloc
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import headway.proxy
from headway.observe.access_log import AccessEntry, AccessLogTail, ReleaseStats, parse_entry
from headway.observe.metrics import (
    BUCKETS,
    CONTENT_TYPE,
    GAUGES,
    MetricsRegistry,
    MetricsServerError,
    RequestMetrics,
    serve,
    status_class,
    tail_and_feed,
)

T0 = 1_712_311_872.0  # a Unix second the tests' clocks start at
KEY = ("shop", "production", "v12", "web")

# -- lines in the proxy's own format ---------------------------------------------------------------------------
_TEMPLATE = Path(headway.proxy.__file__).parent / "templates" / "nginx.conf.j2"


def _log_format() -> str:
    """The `headway_json` log_format of the proxy's nginx.conf template, its quoted pieces joined."""
    text = _TEMPLATE.read_text()
    block = text[text.index("log_format headway_json"):]
    return "".join(re.findall(r"'([^']*)'", block[:block.index("';") + 2]))


LOG_FORMAT = _log_format()
DEFAULTS: dict[str, object] = {
    "time_iso8601": "2024-04-05T10:11:12+00:00", "msec": T0 + 0.123, "headway_app": "shop",
    "headway_env": "production", "headway_release": "v12", "headway_role": "web", "status": 200,
    "request_time": 0.012, "upstream_response_time": "0.011", "upstream_addr": "172.18.0.5:8000",
    "request_method": "GET", "request_uri": "/api/items?page=2", "host": "shop.example.com",
    "remote_addr": "203.0.113.9", "headway_request_id": "4f1c2a9e8b7d6c5f4e3d2c1b0a998877", "body_bytes_sent": 1532,
}
ALIASES = {"app": "headway_app", "environment": "headway_env", "release": "headway_release", "role": "headway_role",
           "uri": "request_uri"}


def proxy_line(**fields: object) -> bytes:
    """One access-log line as nginx writes it with `escape=json` (app=, release=, ... name the fields)."""
    values = {**DEFAULTS, **{ALIASES.get(k, k): v for k, v in fields.items()}}

    def value(m: re.Match[str]) -> str:
        v = values[m.group(1)]
        if isinstance(v, float):
            return f"{v:.3f}"
        return json.dumps(str(v))[1:-1]

    return re.sub(r"\$([a-z0-9_]+)", value, LOG_FORMAT).encode()


def metrics(now: float = T0 + 1, **kwargs: int) -> RequestMetrics:
    return RequestMetrics(clock=lambda: now, **kwargs)


def entry(status: int = 200, t: float = 0.01, at: float = T0, key: tuple[str, str, str, str] = KEY) -> AccessEntry:
    return AccessEntry(*key, status, t, at)


# -- parsing ---------------------------------------------------------------------------------------------------
def test_the_template_format_is_what_the_parser_reads() -> None:
    assert LOG_FORMAT.startswith('{"time":"$time_iso8601","msec":$msec,"app":"$headway_app"')
    line = proxy_line(status=503, request_time=1.5, release="v3", role="api")
    assert json.loads(line)["uri"] == "/api/items?page=2"  # valid JSON, all of it
    assert parse_entry(line) == AccessEntry("shop", "production", "v3", "api", 503, 1.5, T0 + 0.123,
                                            "172.18.0.5:8000")
    assert parse_entry(line.decode()) == parse_entry(line)


def test_escaped_and_reordered_lines_read_the_same() -> None:
    tricky = proxy_line(uri='/search?q="quoted"\\path', release='odd"name', upstream_addr="10.0.0.1:80, 10.0.0.2:80")
    got = parse_entry(tricky)
    assert got is not None and got.release == 'odd"name' and got.upstream_addr == "10.0.0.1:80, 10.0.0.2:80"
    plain = proxy_line()
    reordered = json.dumps(dict(reversed(list(json.loads(plain).items())))).encode()
    assert parse_entry(reordered) == parse_entry(plain)  # the full JSON parse agrees with the quick one


@pytest.mark.parametrize("line", [b"", b"not json", b"[1, 2]", b'{"app":"shop","status":"-"}',
                                  proxy_line()[:-20], proxy_line().replace(b'"status":200', b'"status":2x0')])
def test_lines_that_are_not_requests_are_none(line: bytes) -> None:
    assert parse_entry(line) is None


@pytest.mark.parametrize(("status", "code"), [(101, "1xx"), (200, "2xx"), (304, "3xx"), (499, "4xx"), (504, "5xx"),
                                              (0, "other"), (600, "other")])
def test_status_classes(status: int, code: str) -> None:
    assert status_class(status) == code


# -- counters and histograms -----------------------------------------------------------------------------------
def test_counts_and_histogram_are_exact() -> None:
    rm = metrics()
    times = [0.001, 0.005, 0.0051, 0.01, 0.3, 0.3, 2.5, 10.0, 12.0]
    statuses = [200, 200, 201, 302, 404, 499, 500, 502, 200]
    for status, t in zip(statuses, times, strict=True):
        rm.add(entry(status, t))
    rm.add(entry(200, 0.1, key=("shop", "production", "v12", "api")))
    assert rm.counts(KEY) == {"2xx": 4, "3xx": 1, "4xx": 2, "5xx": 2}
    series = rm.series[KEY]
    per_bucket = dict(zip((*BUCKETS, math.inf), series.buckets, strict=True))
    # le is inclusive: 0.005 is in the 0.005 bucket, 0.0051 in the next
    assert per_bucket[0.005] == 2 and per_bucket[0.01] == 2 and per_bucket[0.5] == 2
    assert per_bucket[2.5] == 1 and per_bucket[10.0] == 1 and per_bucket[math.inf] == 1
    assert sum(series.buckets) == series.count == 9 and series.sum == pytest.approx(sum(times))
    assert rm.counts(("shop", "production", "v12", "api")) == {"2xx": 1}


def test_window_rate_error_share_and_percentiles_are_exact_on_known_data() -> None:
    rm = metrics(now=T0 + 59)
    times = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms, one request each
    for i, t in enumerate(reversed(times)):
        rm.add(entry(500 if i % 10 == 0 else 200, t, at=T0 + i % 60))
    w = rm.window(KEY, 60)
    assert (w.requests, w.server_errors) == (100, 10)
    assert w.rate == pytest.approx(100 / 60) and w.server_error_share == pytest.approx(0.1)
    assert (w.p50, w.p95, w.p99) == (0.05, 0.095, 0.099)
    reference = ReleaseStats(times=list(times))  # the canary's percentiles: the same nearest rank
    assert (w.p50, w.p95, w.p99) == (reference.percentile(50), reference.percentile(95), reference.percentile(99))


def test_the_window_slides_by_whole_seconds() -> None:
    rm = metrics()
    for _ in range(10):
        rm.add(entry(500, 1.0, at=T0 + 0.5))
    for _ in range(30):
        rm.add(entry(200, 0.01, at=T0 + 120.9))
    one, five = rm.window(KEY, 60, now=T0 + 130), rm.window(KEY, 300, now=T0 + 130)
    assert (one.requests, one.server_errors, one.p99) == (30, 0, 0.01)
    assert (five.requests, five.server_errors, five.p99) == (40, 10, 1.0)
    assert five.rate == pytest.approx(40 / 300) and five.server_error_share == pytest.approx(0.25)
    assert rm.window(KEY, 300, now=T0 + 299).requests == 40
    assert rm.window(KEY, 300, now=T0 + 300).requests == 30  # T0's second has left the five minutes
    gone = rm.window(KEY, 300, now=T0 + 421)
    assert gone.requests == 0 and math.isnan(gone.p50) and gone.rate == 0
    assert rm.counts(KEY) == {"5xx": 10, "2xx": 30}  # the counters keep everything
    rm.add(entry(200, 0.5, at=T0 + 120 - 300))  # older than what its slot holds: counted, not in the window
    assert rm.counts(KEY)["2xx"] == 31 and rm.window(KEY, 300, now=T0 + 130).requests == 40


def test_a_busy_second_is_sampled_and_weighted() -> None:
    rm = metrics(now=T0 + 2, samples_per_second=100)
    for _ in range(3000):
        rm.add(entry(200, 0.001, at=T0))  # 3000 fast requests in one second: 100 kept, each standing for 30
    for _ in range(100):
        rm.add(entry(200, 1.0, at=T0 + 1))  # 100 slow ones the next second: all kept
    w = rm.window(KEY, 60)
    assert w.requests == 3100 and rm.stored_samples() == 200
    # of 3100 requests 3000 were fast: p95 (rank 2945) is fast, p99 (rank 3069) slow; unweighted, the 200 kept
    # samples would make p95 slow
    assert (w.p50, w.p95, w.p99) == (0.001, 0.001, 1.0)


def test_a_uniform_sample_estimates_the_percentiles() -> None:
    rm = metrics(now=T0 + 59, samples_per_second=50)
    for i in range(60 * 1000):  # 1000 requests a second, uniform over 0..1 s
        rm.add(entry(200, (i * 7919 % 1000) / 1000, at=T0 + i // 1000))
    w = rm.window(KEY, 60)
    assert w.requests == 60_000 and rm.stored_samples() == 60 * 50
    assert w.p50 == pytest.approx(0.5, abs=0.05) and w.p95 == pytest.approx(0.95, abs=0.03)
    assert w.p99 == pytest.approx(0.99, abs=0.02)


def test_series_are_bounded_and_the_longest_unseen_goes() -> None:
    rm = metrics(max_series=3)
    for release in ("v1", "v2", "v3"):
        rm.add(entry(key=("shop", "production", release, "web")))
    rm.add(entry(key=("shop", "production", "v1", "web")))  # v1 seen again: v2 is now the longest unseen
    rm.add(entry(key=("shop", "production", "v4", "web")))
    assert {k[2] for k in rm.series} == {"v1", "v3", "v4"} and rm.dropped_series == 1
    assert rm.forget("shop", "production", release="v1") == 1 and rm.forget("shop", "production") == 2
    assert rm.series == {}


def test_requests_for_no_app_are_not_a_series() -> None:
    registry = MetricsRegistry(metrics())
    assert registry.feed([proxy_line(app="", environment="", release="", role="", status=404), b"junk",
                          proxy_line()]) == 1
    assert list(registry.requests.series) == [KEY]
    assert registry.lines == {"counted": 1, "invalid": 1, "unrouted": 1}


def test_a_million_lines_in_bounded_memory_and_time() -> None:
    """1e6 real-shaped lines, 500 a second for 2000 simulated seconds, across 4 series, fed 10,000 at a time."""
    clock = [T0]
    rm = RequestMetrics(clock=lambda: clock[0], samples_per_second=100)
    registry = MetricsRegistry(rm)
    shapes = []
    for role in ("web", "api"):
        for release in ("v1", "v2"):
            for status, t in ((200, 0.012), (200, 0.004), (500, 0.25), (404, 0.001), (302, 0.03)):
                head, tail = proxy_line(role=role, release=release, status=status, request_time=t,
                                        msec=1234.5).split(b"1234.500", 1)
                shapes.append((head, tail))
    n, batch, per_second = 1_000_000, 10_000, 500

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def feed(first: int, count: int) -> None:
        for b in range(first, first + count, batch):
            lines = [shapes[i % 20][0] + b"%.3f" % (T0 + i / per_second) + shapes[i % 20][1]
                     for i in range(b, b + batch)]
            clock[0] = T0 + (b + batch - 1) / per_second  # the last line's time
            assert registry.feed(lines) == batch

    started = time.perf_counter()
    feed(0, 400_000)  # 800 simulated seconds: the five-minute window has been full for 500 of them
    size_full, rss_full = retained_bytes(rm), rss()
    feed(400_000, 550_000)
    elapsed, size_later, grown = time.perf_counter() - started, retained_bytes(rm), rss() - rss_full
    tracemalloc.start()  # what the allocations of the last 50,000 lines still hold afterwards
    feed(950_000, 50_000)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    bound = len(rm.series) * rm.horizon * rm.samples_per_second
    print(f"\n950,000 lines: {elapsed:.1f} s ({950_000 / elapsed:,.0f} lines/s, making them included); "
          f"state {size_full / 1e6:.2f} MB after 400,000, {size_later / 1e6:.2f} MB after 950,000; "
          f"RSS {grown / 1e6:+.1f} MB meanwhile; {held / 1e6:.2f} MB held from the allocations of the last 50,000; "
          f"{rm.stored_samples()} samples stored (bound {bound})")
    assert sum(sum(s.codes.values()) for s in rm.series.values()) == n
    assert rm.counts(("shop", "production", "v1", "web")) == {"2xx": 100_000, "5xx": 50_000, "4xx": 50_000,
                                                              "3xx": 50_000}
    assert rm.stored_samples() == bound == 4 * 300 * 100
    w = rm.window(("shop", "production", "v1", "web"), 60)
    assert w.requests == 60 * per_second // 4 and w.server_error_share == pytest.approx(0.2)
    assert size_later == size_full and held < 1e6 and grown < 16e6
    assert elapsed < 120


def retained_bytes(rm: RequestMetrics) -> int:
    """What RequestMetrics' own structures take: series, counters, rings, slots and their samples."""
    total = sys.getsizeof(rm.series)
    for key, series in rm.series.items():
        total += sys.getsizeof(key) + sys.getsizeof(series) + sys.getsizeof(series.codes)
        total += sys.getsizeof(series.buckets) + sys.getsizeof(series.ring)
        total += sum(sys.getsizeof(slot) + sys.getsizeof(slot.samples) for slot in series.ring if slot is not None)
    return total


# -- the tail --------------------------------------------------------------------------------------------------
def write(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def releases(lines: list[bytes]) -> list[str]:
    return [e.release for e in map(parse_entry, lines) if e is not None]


def test_tail_reads_only_new_lines_and_keeps_a_partial_line(tmp_path: Path) -> None:
    log, position = tmp_path / "access.log", tmp_path / "position.json"
    write(log, proxy_line(release="old") + b"\n")
    tail = AccessLogTail(log, position)
    assert tail.read() == []  # no position yet: from the end
    write(log, proxy_line(release="a") + b"\n" + proxy_line(release="b")[:50])
    assert releases(tail.read()) == ["a"]
    again = AccessLogTail(log, position)  # a restart: the position is in the state file
    assert again.read() == []
    write(log, proxy_line(release="b")[50:] + b"\n")
    assert releases(again.read()) == ["b"]
    assert again.offset == log.stat().st_size and again.behind == 0
    assert releases(AccessLogTail(log, tmp_path / "p2", from_start=True).read()) == ["old", "a", "b"]


def test_tail_follows_rotation_and_truncation(tmp_path: Path) -> None:
    log, position = tmp_path / "access.log", tmp_path / "position.json"
    write(log, b"")
    tail = AccessLogTail(log, position)
    write(log, b"1\n2\n")
    assert tail.read() == [b"1", b"2"]
    write(log, b"3\n")
    os.rename(log, tmp_path / "access.log.1")  # logrotate: the proxy writes on to the old file until it reopens
    write(tmp_path / "access.log.1", b"4\n")
    write(log, b"5\n6\n")
    assert tail.read() == [b"3", b"4", b"5", b"6"]
    write(log, b"7\n")
    os.rename(log, tmp_path / "access.log.1")  # rotated, and the old file gone: the new one from its start
    (tmp_path / "access.log.1").unlink()
    write(log, b"8\n")
    assert tail.read() == [b"8"]
    write(log, b"9\n10\n11\n")
    assert tail.read() == [b"9", b"10", b"11"]
    with open(log, "wb") as fh:  # copytruncate: the same file, emptied, then written again
        fh.write(b"12\n")
    assert tail.read() == [b"12"]
    assert json.loads(position.read_text())["offset"] == 3


def test_tail_is_bounded_per_read_and_skips_an_overlong_line(tmp_path: Path) -> None:
    log, position = tmp_path / "access.log", tmp_path / "position.json"
    write(log, b"")
    tail = AccessLogTail(log, position, max_bytes=10)
    write(log, b"aaa\nbbb\nccc\nddd\n")
    assert tail.read() == [b"aaa", b"bbb"] and tail.behind == 8
    assert tail.read() == [b"ccc", b"ddd"] and tail.behind == 0
    write(log, b"x" * 25 + b"\neee\n")
    got = [tail.read() for _ in range(4)]
    assert got == [[], [], [b"eee"], []] and tail.skipped_lines == 1
    write(log, b"")
    assert AccessLogTail(log, tmp_path / "missing" / "position.json").read() == []


def test_tail_and_feed_catch_up_in_bounded_reads(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, b"")
    tail = AccessLogTail(log, tmp_path / "position.json", max_bytes=4096)
    write(log, b"".join(proxy_line(status=200 + i % 2 * 300) + b"\n" for i in range(100)))
    registry = MetricsRegistry(metrics())
    assert tail_and_feed(registry=registry, tail=tail) == 100 and tail.behind == 0
    assert registry.requests.counts(KEY) == {"2xx": 50, "5xx": 50}


def test_tail_of_a_missing_or_unreadable_state(tmp_path: Path) -> None:
    log, position = tmp_path / "access.log", tmp_path / "position.json"
    assert AccessLogTail(log, position).read() == []  # no log yet
    write(log, b"1\n")
    position.write_text("{not json")
    tail = AccessLogTail(log, position)
    assert tail.read() == []  # a damaged position starts afresh at the end
    write(log, b"2\n")
    assert tail.read() == [b"2"]


# -- exposition ------------------------------------------------------------------------------------------------
CONTAINER = {"app": "shop", "environment": "production", "release": "v12", "role": "web", "container": "shop-web-1"}


def filled_registry() -> MetricsRegistry:
    registry = MetricsRegistry(metrics(now=T0 + 10))
    registry.feed([proxy_line(status=200, request_time=0.004), proxy_line(status=200, request_time=0.3),
                   proxy_line(status=503, request_time=0.02), proxy_line(role="api", status=201)])
    registry.set_gauge("headway_container_cpu_ratio", CONTAINER, 0.25)
    registry.set_gauge("headway_container_memory_bytes", CONTAINER, 123456789)
    registry.set_gauge("headway_container_restarts_total", CONTAINER, 2)
    registry.set_gauge("headway_host_cpu_ratio", {}, 0.5)
    registry.set_gauge("headway_host_memory_used_ratio", {}, 0.75)
    registry.set_gauge("headway_host_disk_used_ratio", {"path": "/"}, 0.4)
    registry.set_gauge("headway_host_load1", {}, 1.25)
    registry.set_gauge("headway_queue_length", {"app": "shop", "environment": "production", "queue": "default"}, 7)
    db = {"app": "shop", "environment": "production", "database": "db"}
    registry.set_gauge("headway_database_connections", db, 12)
    registry.set_gauge("headway_database_size_bytes", db, 2.5e9)
    registry.set_gauge("headway_backup_last_success_timestamp_seconds", db, T0 - 3600)
    registry.set_gauge("headway_certificate_expiry_timestamp_seconds", {"domain": "shop.example.com"}, T0 + 86400)
    registry.set_gauge("headway_up", {"app": "shop", "environment": "production", "check": "proxy"}, 1)
    registry.set_gauge("headway_up", {"app": "shop", "environment": "production", "check": "direct"}, 0)
    return registry


def parsed(text: bytes) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """family name -> {(sample name, sorted labels): value}, plus each family's type under '<name>:type'."""
    out: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in text_string_to_metric_families(text.decode()):
        out[family.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        out[f"{family.name}:type"] = {(family.type, ()): 0.0}
    return out


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def test_exposition_parses_back_with_every_metric() -> None:
    text = filled_registry().exposition()
    families = parsed(text)
    web = {"app": "shop", "environment": "production", "release": "v12", "role": "web"}
    requests = families["headway_http_requests"]
    assert ("counter", ()) in families["headway_http_requests:type"]
    assert requests[("headway_http_requests_total", labels(**web, code="2xx"))] == 2
    assert requests[("headway_http_requests_total", labels(**web, code="5xx"))] == 1
    assert requests[("headway_http_requests_total", labels(**{**web, "role": "api"}, code="2xx"))] == 1
    duration = families["headway_http_request_duration_seconds"]
    assert ("histogram", ()) in families["headway_http_request_duration_seconds:type"]
    bucket = "headway_http_request_duration_seconds_bucket"
    assert duration[(bucket, labels(**web, le="0.005"))] == 1
    assert duration[(bucket, labels(**web, le="0.025"))] == 2
    assert duration[(bucket, labels(**web, le="0.25"))] == 2
    assert duration[(bucket, labels(**web, le="0.5"))] == 3 == duration[(bucket, labels(**web, le="+Inf"))]
    assert duration[("headway_http_request_duration_seconds_count", labels(**web))] == 3
    assert duration[("headway_http_request_duration_seconds_sum", labels(**web))] == pytest.approx(0.324)
    assert len([k for k in duration if k[0] == bucket and dict(k[1])["role"] == "web"]) == len(BUCKETS) + 1
    assert families["headway_http_server_error_ratio"][
        ("headway_http_server_error_ratio", labels(**web, window="1m"))] == pytest.approx(1 / 3)
    assert families["headway_http_request_rate"][
        ("headway_http_request_rate", labels(**web, window="5m"))] == pytest.approx(3 / 300)
    assert families["headway_http_request_duration_window_seconds"][
        ("headway_http_request_duration_window_seconds", labels(**web, window="1m", quantile="0.99"))] == 0.3
    restarts = families["headway_container_restarts"]
    assert restarts == {("headway_container_restarts_total", labels(**CONTAINER)): 2}
    assert ("counter", ()) in families["headway_container_restarts:type"]
    assert families["headway_container_memory_bytes"] == {
        ("headway_container_memory_bytes", labels(**CONTAINER)): 123456789}
    assert families["headway_host_disk_used_ratio"] == {("headway_host_disk_used_ratio", labels(path="/")): 0.4}
    assert families["headway_host_load1"] == {("headway_host_load1", ()): 1.25}
    assert families["headway_certificate_expiry_timestamp_seconds"] == {
        ("headway_certificate_expiry_timestamp_seconds", labels(domain="shop.example.com")): T0 + 86400}
    up = families["headway_up"]
    assert up[("headway_up", labels(app="shop", environment="production", check="proxy"))] == 1
    assert up[("headway_up", labels(app="shop", environment="production", check="direct"))] == 0
    for name in GAUGES:
        family = name.removesuffix("_total")
        assert families[family], f"{name} has no sample"
    assert text.count(b"# TYPE headway_up gauge") == 1


def test_gauges_check_their_names_and_labels() -> None:
    registry = MetricsRegistry(metrics())
    with pytest.raises(ValueError, match="unknown metric 'headway_nope'"):
        registry.set_gauge("headway_nope", {}, 1)
    with pytest.raises(ValueError, match="takes the labels path, not .none."):
        registry.set_gauge("headway_host_disk_used_ratio", {}, 1)
    with pytest.raises(ValueError, match="proxy or direct"):
        registry.set_gauge("headway_up", {"app": "a", "environment": "e", "check": "dns"}, 1)
    registry.set_gauge("headway_host_disk_used_ratio", {"path": "/"}, 0.1)
    registry.set_gauge("headway_host_disk_used_ratio", {"path": "/var"}, 0.2)
    assert registry.remove_gauge("headway_host_disk_used_ratio", {"path": "/"})
    assert not registry.remove_gauge("headway_host_disk_used_ratio", {"path": "/"})
    assert b'path="/var"' in registry.exposition() and b'path="/"}' not in registry.exposition()
    registry.clear_gauges("headway_host_disk_used_ratio")
    assert b"headway_host_disk_used_ratio{" not in registry.exposition()


# -- serving ---------------------------------------------------------------------------------------------------
def test_the_endpoint_answers_a_scrape() -> None:
    registry = filled_registry()
    with serve(registry, "127.0.0.1", 0) as server:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}/metrics"
        answer = httpx.get(server.url, timeout=5)
        assert answer.status_code == 200 and answer.headers["content-type"] == CONTENT_TYPE
        families = parsed(answer.content)
        assert families["headway_host_load1"] == {("headway_host_load1", ()): 1.25}
        registry.feed([proxy_line(status=500)])  # a later scrape sees what was fed since
        again = parsed(httpx.get(server.url, timeout=5).content)["headway_http_requests"]
        web5xx = labels(app="shop", environment="production", release="v12", role="web", code="5xx")
        assert again[("headway_http_requests_total", web5xx)] == 2
        assert httpx.get(f"http://127.0.0.1:{server.port}/other", timeout=5).status_code == 404
        assert httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=5).text == "ok\n"
    with serve(registry, "127.0.0.1", 0, health=lambda: (False, "the access log is 3 GB behind")) as server:
        sick = httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=5)
        assert sick.status_code == 503 and sick.text == "the access log is 3 GB behind\n"


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsServerError) as info:
            serve(MetricsRegistry(), "127.0.0.1", port)
    message = str(info.value)
    assert f"port {port} on 127.0.0.1 is already in use" in message
    assert f"sport = :{port}" in message and "another metrics port" in message
    with pytest.raises(MetricsServerError, match="use an address of this machine"):
        serve(MetricsRegistry(), "203.0.113.250", 0)
