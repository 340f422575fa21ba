"""Request metrics from headway's proxy access log, and the Prometheus exposition of everything a host reports.

`RequestMetrics` counts the proxy's requests per app, environment, release and role: requests by status class and a
latency histogram (Prometheus' conventional buckets, 5 ms to 10 s) since it started, and a rolling window (the last
minute, the last five) that gives the request rate, the share of 5xx answers and the p50/p95/p99 latency.

The window is a ring of one-second slots per series. Each slot keeps its request and 5xx counts exactly and a
uniform sample (reservoir sampling, algorithm R) of at most `samples_per_second` request times; a percentile is the
nearest-rank value of the window's samples, each weighted by its second's requests per kept sample. While no second
had more requests than `samples_per_second` (the usual case: 100 a second by default) every request time is kept and
the percentiles are exact, as `ReleaseStats.percentile` computes them; past that they are estimates from a sample
that still grows with the window, never with the traffic. Per-second slots, rather than one reservoir for the whole
window, let the window slide by dropping whole seconds, keep the counts (and so rate and 5xx share) exact, and bound
the memory to `samples_per_second` x 300 floats per series however busy it is; per-second latency histograms would
be as small but give percentiles only to a bucket's width.

`MetricsRegistry` adds the gauges other parts of headway measure (containers, host, queues, databases, backups,
certificates, health checks) and renders all of it in Prometheus' text format (0.0.4) through a `prometheus_client`
collector; `serve` answers scrapes of it over HTTP.
"""

from __future__ import annotations

import errno
import math
import random
import socket
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from headway.errors import HeadwayError
from headway.observe.access_log import AccessEntry, AccessLogTail, parse_entry

__all__ = ["BUCKETS", "CONTENT_TYPE", "DEFAULT_PORT", "GAUGES", "AccessLogTail", "MetricsRegistry", "MetricsServer",
           "MetricsServerError", "RequestMetrics", "SeriesKey", "WindowStats", "serve", "status_class"]

BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
WINDOWS: tuple[int, ...] = (60, 300)  # seconds: the rolling windows reported
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_PORT = 9105
SERIES_LABELS = ("app", "environment", "release", "role")

SeriesKey = tuple[str, str, str, str]  # app, environment, release, role


def status_class(status: int) -> str:
    """"2xx" for 200..299 and so on; "other" for a status outside 100..599."""
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


@dataclass(frozen=True)
class WindowStats:
    """What one series did in the last `seconds` seconds (whole seconds, the current one included)."""

    seconds: int
    requests: int
    server_errors: int  # 5xx
    p50: float  # request time, seconds; NaN when there was no request
    p95: float
    p99: float

    @property
    def rate(self) -> float:
        """Requests per second over the window."""
        return self.requests / self.seconds

    @property
    def server_error_share(self) -> float:
        """The share (0..1) of the window's requests answered 5xx; 0 when there was none."""
        return self.server_errors / self.requests if self.requests else 0.0


class _Second:
    __slots__ = ("errors", "requests", "samples", "second")

    def __init__(self, second: int) -> None:
        self.second, self.requests, self.errors = second, 0, 0
        self.samples = array("d")


class _Series:
    __slots__ = ("buckets", "codes", "count", "last_seen", "ring", "sum")

    def __init__(self, slots: int) -> None:
        self.codes: dict[str, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0
        self.count = 0
        self.last_seen = 0  # RequestMetrics' feed counter when the series last had a request
        self.ring: list[_Second | None] = [None] * slots


def _nearest_rank(pairs: list[tuple[float, float]], total: float, p: float) -> float:
    """The smallest value whose cumulative weight reaches p% of the total (pairs sorted by value)."""
    target = p / 100 * total
    cumulative = 0.0
    for value, weight in pairs:
        cumulative += weight
        if cumulative >= target - 1e-9 * total:
            return value
    return pairs[-1][0]


class RequestMetrics:
    """Counters, latency histograms and rolling windows of the proxy's requests, per (app, environment, release,
    role). Memory is bounded: at most `max_series` series (the one unseen longest is dropped for a new one past
    that), each with at most `samples_per_second` x `horizon` request times."""

    def __init__(self, *, samples_per_second: int = 100, horizon: int = max(WINDOWS), max_series: int = 1000,
                 clock: Callable[[], float] = time.time, seed: int | None = 0) -> None:
        if samples_per_second < 1 or horizon < 1 or max_series < 1:
            raise ValueError("samples_per_second, horizon and max_series must be positive")
        self.samples_per_second, self.horizon, self.max_series = samples_per_second, horizon, max_series
        self.clock = clock
        self.series: dict[SeriesKey, _Series] = {}
        self.unrouted = 0  # requests no app was served for (unknown host names): not in any series
        self.dropped_series = 0
        self._fed = 0
        self._random = random.Random(seed)

    # -- recording ----------------------------------------------------------------------------------------------
    def add(self, entry: AccessEntry, now: float | None = None) -> None:
        """Count one request. Its time in the window is the line's `msec` (when it ended), else `now`."""
        if not entry.app:
            self.unrouted += 1
            return
        key = (entry.app, entry.environment, entry.release, entry.role)
        series = self.series.get(key)
        if series is None:
            series = self._new_series(key)
        self._fed += 1
        series.last_seen = self._fed
        code = status_class(entry.status)
        series.codes[code] = series.codes.get(code, 0) + 1
        t = entry.request_time if entry.request_time >= 0 else 0.0
        series.buckets[bisect_left(BUCKETS, t)] += 1
        series.sum += t
        series.count += 1
        when = entry.msec if entry.msec > 0 else (self.clock() if now is None else now)
        second = int(when)
        index = second % self.horizon
        slot = series.ring[index]
        if slot is None or slot.second < second:
            slot = series.ring[index] = _Second(second)
        elif slot.second > second:
            return  # older than the window already: counted above, not in the window
        slot.requests += 1
        if entry.status >= 500:
            slot.errors += 1
        if len(slot.samples) < self.samples_per_second:
            slot.samples.append(t)
        else:
            j = self._random.randrange(slot.requests)
            if j < self.samples_per_second:
                slot.samples[j] = t

    def _new_series(self, key: SeriesKey) -> _Series:
        if len(self.series) >= self.max_series:
            oldest = min(self.series, key=lambda k: self.series[k].last_seen)
            del self.series[oldest]
            self.dropped_series += 1
        series = self.series[key] = _Series(self.horizon)
        return series

    def forget(self, app: str, environment: str, release: str | None = None) -> int:
        """Drop the series of an app's environment (of one release only, when given); how many were dropped."""
        keys = [k for k in self.series if k[0] == app and k[1] == environment and release in (None, k[2])]
        for k in keys:
            del self.series[k]
        return len(keys)

    # -- reading ------------------------------------------------------------------------------------------------
    def counts(self, key: SeriesKey) -> dict[str, int]:
        """Requests by status class since the start ({"2xx": n, "5xx": m, ...})."""
        series = self.series.get(key)
        return dict(series.codes) if series else {}

    def window(self, key: SeriesKey, seconds: int = 60, now: float | None = None) -> WindowStats:
        """The series' last `seconds` seconds (at most `horizon`), up to `now` (the clock when not given)."""
        if not 1 <= seconds <= self.horizon:
            raise ValueError(f"a window is 1 to {self.horizon} seconds")
        current = int(self.clock() if now is None else now)
        requests = errors = 0
        pairs: list[tuple[float, float]] = []
        exact = True
        series = self.series.get(key)
        for slot in series.ring if series else ():
            if slot is None or not current - seconds < slot.second <= current:
                continue
            requests += slot.requests
            errors += slot.errors
            if slot.samples:
                weight = slot.requests / len(slot.samples)
                exact = exact and weight == 1.0
                pairs.extend((t, weight) for t in slot.samples)
        if not pairs:
            nan = math.nan
            return WindowStats(seconds, requests, errors, nan, nan, nan)
        pairs.sort()
        if exact:  # every request time is there: plain nearest rank
            n = len(pairs)
            p50, p95, p99 = (pairs[min(n - 1, max(0, math.ceil(p / 100 * n) - 1))][0] for p in (50, 95, 99))
        else:
            total = float(requests)
            p50, p95, p99 = (_nearest_rank(pairs, total, p) for p in (50, 95, 99))
        return WindowStats(seconds, requests, errors, p50, p95, p99)

    def stored_samples(self) -> int:
        """Request times held for the windows, over all series (bounded by max_series x horizon x
        samples_per_second)."""
        return sum(len(s.samples) for series in self.series.values() for s in series.ring if s is not None)


# -- gauges others measure --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GaugeSpec:
    kind: str  # "gauge" or "counter"
    help: str
    labels: tuple[str, ...]


_CONTAINER = ("app", "environment", "release", "role", "container")
_DATABASE = ("app", "environment", "database")
GAUGES: dict[str, GaugeSpec] = {
    "headway_container_cpu_ratio": GaugeSpec("gauge", "CPU used by the container, in cores (1.0 = one core)",
                                             _CONTAINER),
    "headway_container_memory_bytes": GaugeSpec("gauge", "Memory used by the container", _CONTAINER),
    "headway_container_restarts_total": GaugeSpec("counter", "Times the Docker Engine restarted the container",
                                                  _CONTAINER),
    "headway_host_cpu_ratio": GaugeSpec("gauge", "Share of the host's CPU time in use (0..1)", ()),
    "headway_host_memory_used_ratio": GaugeSpec("gauge", "Share of the host's memory in use (0..1)", ()),
    "headway_host_disk_used_ratio": GaugeSpec("gauge", "Share of the filesystem at path in use (0..1)", ("path",)),
    "headway_host_load1": GaugeSpec("gauge", "The host's one-minute load average", ()),
    "headway_queue_length": GaugeSpec("gauge", "Jobs waiting in the queue", ("app", "environment", "queue")),
    "headway_database_connections": GaugeSpec("gauge", "Open connections to the database", _DATABASE),
    "headway_database_size_bytes": GaugeSpec("gauge", "Size of the database on disk", _DATABASE),
    "headway_backup_last_success_timestamp_seconds": GaugeSpec("gauge", "When the last backup succeeded (Unix time)",
                                                               _DATABASE),
    "headway_certificate_expiry_timestamp_seconds": GaugeSpec("gauge", "When the domain's certificate expires "
                                                              "(Unix time)", ("domain",)),
    "headway_up": GaugeSpec("gauge", "1 when the app's health check passes through the proxy (check=proxy) or "
                            "against its containers (check=direct), else 0", ("app", "environment", "check")),
}
_CHECKS = ("proxy", "direct")


class MetricsRegistry:
    """Everything one host reports: the proxy's request metrics (fed access-log lines) and the gauges callers set.
    Safe to feed and set from one thread while another scrapes."""

    def __init__(self, requests: RequestMetrics | None = None) -> None:
        self.requests = requests or RequestMetrics()
        self.lines = {"counted": 0, "invalid": 0, "unrouted": 0}
        self._gauges: dict[str, dict[tuple[str, ...], float]] = {name: {} for name in GAUGES}
        self._lock = threading.Lock()
        self.prometheus = CollectorRegistry(auto_describe=False)
        self.prometheus.register(_Collector(self))

    def feed(self, lines: Iterable[bytes | str]) -> int:
        """Count the requests in access-log lines (as `AccessLogTail.read` returns them); how many were counted.
        Lines that are not the proxy's JSON are skipped (and counted as invalid)."""
        counted = invalid = unrouted = 0
        with self._lock:
            now = self.requests.clock()
            add = self.requests.add
            for line in lines:
                entry = parse_entry(line)
                if entry is None:
                    invalid += 1
                elif not entry.app:
                    unrouted += 1
                else:
                    counted += 1
                    add(entry, now)
            self.lines["counted"] += counted
            self.lines["invalid"] += invalid
            self.lines["unrouted"] += unrouted
        return counted

    def _check(self, name: str, labels: Mapping[str, str]) -> tuple[str, ...]:
        spec = GAUGES.get(name)
        if spec is None:
            raise ValueError(f"unknown metric {name!r}: one of {', '.join(sorted(GAUGES))}")
        if set(labels) != set(spec.labels):
            raise ValueError(f"{name} takes the labels {', '.join(spec.labels) or '(none)'}, "
                             f"not {', '.join(sorted(labels)) or '(none)'}")
        if name == "headway_up" and labels["check"] not in _CHECKS:
            raise ValueError(f"headway_up's check label is proxy or direct, not {labels['check']!r}")
        return tuple(str(labels[label]) for label in spec.labels)

    def set_gauge(self, name: str, labels: Mapping[str, str], value: float) -> None:
        """Set one of the GAUGES for a set of labels (exactly those the metric takes)."""
        key = self._check(name, labels)
        number = float(value)
        with self._lock:
            self._gauges[name][key] = number

    def remove_gauge(self, name: str, labels: Mapping[str, str]) -> bool:
        """Stop reporting a series (a container that is gone); whether it was reported."""
        key = self._check(name, labels)
        with self._lock:
            return self._gauges[name].pop(key, None) is not None

    def clear_gauges(self, name: str) -> None:
        """Stop reporting every series of a metric (before setting the current ones afresh)."""
        if name not in GAUGES:
            raise ValueError(f"unknown metric {name!r}: one of {', '.join(sorted(GAUGES))}")
        with self._lock:
            self._gauges[name].clear()

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format, version 0.0.4."""
        return generate_latest(self.prometheus)

    def _families(self) -> Iterator[Metric]:
        with self._lock:
            yield from self._request_families()
            for name, spec in GAUGES.items():
                family: Metric
                if spec.kind == "counter":
                    family = CounterMetricFamily(name, spec.help, labels=spec.labels)
                else:
                    family = GaugeMetricFamily(name, spec.help, labels=spec.labels)
                for labels, value in sorted(self._gauges[name].items()):
                    family.add_metric(list(labels), value)
                yield family
            lines = CounterMetricFamily("headway_access_log_lines", "Access-log lines read: counted in a series, "
                                        "for no app (unknown host name), or not the proxy's JSON",
                                        labels=["result"])
            for result, n in self.lines.items():
                lines.add_metric([result], n)
            yield lines

    def _request_families(self) -> Iterator[Metric]:
        rm = self.requests
        labels = list(SERIES_LABELS)
        total = CounterMetricFamily("headway_http_requests_total", "Requests the proxy answered, by status class",
                                    labels=[*labels, "code"])
        duration = HistogramMetricFamily("headway_http_request_duration_seconds",
                                         "Time the proxy took to answer a request (nginx's request_time)",
                                         labels=labels)
        rate = GaugeMetricFamily("headway_http_request_rate", "Requests per second over the window",
                                 labels=[*labels, "window"])
        errors = GaugeMetricFamily("headway_http_server_error_ratio",
                                   "Share of the window's requests answered 5xx (0..1)", labels=[*labels, "window"])
        quantiles = GaugeMetricFamily("headway_http_request_duration_window_seconds",
                                      "Request time percentiles over the window", labels=[*labels, "window",
                                                                                         "quantile"])
        now = rm.clock()
        for key in sorted(rm.series):
            series = rm.series[key]
            for code in sorted(series.codes):
                total.add_metric([*key, code], series.codes[code])
            cumulative, buckets = 0, []
            for bound, n in zip((*BUCKETS, math.inf), series.buckets, strict=True):
                cumulative += n
                buckets.append((floatToGoString(bound), cumulative))
            duration.add_metric(list(key), buckets, series.sum)
            for seconds in WINDOWS:
                if seconds > rm.horizon:
                    continue
                w = rm.window(key, seconds, now)
                name = f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"
                rate.add_metric([*key, name], w.rate)
                errors.add_metric([*key, name], w.server_error_share)
                if w.requests and not math.isnan(w.p50):
                    for q, value in (("0.5", w.p50), ("0.95", w.p95), ("0.99", w.p99)):
                        quantiles.add_metric([*key, name, q], value)
        yield from (total, duration, rate, errors, quantiles)


class _Collector(Collector):
    def __init__(self, registry: MetricsRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return list(self.registry._families())


# -- serving ----------------------------------------------------------------------------------------------------
class MetricsServerError(HeadwayError):
    pass


class MetricsServer:
    """A running scrape endpoint: GET /metrics answers the registry's exposition, /health whether it is well."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server, self._thread = server, thread
        address = server.server_address
        self.host, self.port = str(address[0]), int(address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _handler(registry: MetricsRegistry, health: Callable[[], tuple[bool, str]] | None
             ) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "headway-metrics"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            kind = "text/plain; charset=utf-8"
            try:
                if path == "/metrics":
                    status, data, kind = 200, registry.exposition(), CONTENT_TYPE
                elif path == "/health":
                    ok, text = health() if health is not None else (True, "ok")
                    status, data = 200 if ok else 503, f"{text}\n".encode()
                elif path == "/":
                    status, data = 200, b"headway metrics: /metrics, /health\n"
                else:
                    status, data = 404, b"not found: the metrics are at /metrics\n"
            except Exception as exc:  # noqa: BLE001 - the scraper gets the reason, the endpoint stays up
                status, data = 500, f"{path} failed: {type(exc).__name__}: {exc}\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

    return Handler


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


def serve(registry: MetricsRegistry, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
          health: Callable[[], tuple[bool, str]] | None = None) -> MetricsServer:
    """Answer scrapes of the registry at http://host:port/metrics from a background thread (port 0: any free one).
    /health answers 200 with "ok", or what `health()` returns: (ok, text), 503 when not ok. A port that is taken or
    not allowed, or a host that is not an address of this machine, is a MetricsServerError naming it and the fix."""
    server_class = _HTTPServer6 if ":" in host else _HTTPServer
    try:
        server = server_class((host, port), _handler(registry, health))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise MetricsServerError(
                f"port {port} on {host} is already in use, so the metrics endpoint cannot listen there",
                f"stop what listens on it (`ss -ltnp 'sport = :{port}'` shows it) or choose another metrics port",
            ) from None
        if exc.errno == errno.EACCES:
            raise MetricsServerError(f"port {port} needs root to listen on",
                                     "choose a port above 1023 for the metrics endpoint") from None
        raise MetricsServerError(f"the metrics endpoint cannot listen on {host}:{port}: {exc.strerror or exc}",
                                 "use an address of this machine (127.0.0.1 to be scraped locally, 0.0.0.0 for "
                                 "all) and a free port") from None
    thread = threading.Thread(target=server.serve_forever, name=f"headway-metrics-{port}", daemon=True)
    thread.start()
    return MetricsServer(server, thread)


def tail_and_feed(tail: AccessLogTail, registry: MetricsRegistry, *, max_reads: int = 64) -> int:
    """Feed the registry what the tail has read since last time, reading until it has caught up (at most
    `max_reads` reads of tail.max_bytes); how many requests were counted."""
    counted = 0
    for _ in range(max_reads):
        counted += registry.feed(tail.read())
        if tail.behind == 0:
            break
    return counted


def access_log_tail(state_dir: Path) -> AccessLogTail:
    """The tail of the proxy's access log under a headway state directory, its position kept beside it."""
    return AccessLogTail(state_dir / "proxy" / "logs" / "access.log", state_dir / "observe" / "access-log.position")
