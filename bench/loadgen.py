"""A steady-rate HTTP load generator for zero-downtime checks: counts every failure, bounded in count and time."""

from __future__ import annotations

import http.client
import json
import queue
import select
import ssl
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Self
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0  # 2xx
    non_2xx: int = 0
    errors: int = 0  # connection errors, timeouts
    retried: int = 0  # GETs retried once after the server closed a reused keep-alive connection
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    bodies: Counter[str] = field(default_factory=Counter)  # distinct response bodies' `release`, if JSON
    expected_503: int = 0  # 503s carrying the maintenance page's marker, when the client was told to expect them

    @property
    def failed(self) -> int:
        return self.non_2xx + self.errors

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        data = sorted(self.latencies_ms)
        k = min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))
        return data[k]

    def summary(self) -> dict[str, object]:
        return {"sent": self.sent, "ok": self.ok, "non_2xx": self.non_2xx, "errors": self.errors,
                "retried": self.retried, "expected_503": self.expected_503,
                "p50_ms": round(self.percentile(50), 2), "p99_ms": round(self.percentile(99), 2),
                "mean_ms": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else 0.0,
                "seconds": round(self.seconds, 2), "rate": round(self.sent / self.seconds, 1) if self.seconds
                else 0.0, "statuses": dict(self.statuses), "releases": dict(self.bodies)}


MAINTENANCE_503 = "503 maintenance page"  # the status recorded for an expected maintenance answer


def is_failure(status: str) -> bool:
    """A recorded status (an HTTP code, an exception's name or MAINTENANCE_503) that counts as failed."""
    if status == MAINTENANCE_503:
        return False
    return not (status.isdigit() and 200 <= int(status) < 300)


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that is readable has been closed (or is misbehaving): don't reuse it."""
    sock = conn.sock
    if sock is None:
        return False
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


class SteadyLoad:
    """Sends `rate` requests per second to `url` from a pool of keep-alive connections, in background threads,
    until stopped or a bound (count or time) is hit. Requests are scheduled on a fixed clock, so a slow
    response does not lower the offered rate (up to `workers` requests in flight)."""

    def __init__(self, url: str, rate: float = 200.0, max_seconds: float = 300.0, max_requests: int = 200_000,
                 timeout: float = 10.0, headers: dict[str, str] | None = None, track_release: bool = True,
                 workers: int = 32, timeline: list[tuple[float, float, str, str | None]] | None = None,
                 strict: bool = True, maintenance_marker: bytes | None = None) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "https"
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or (443 if self.tls else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.rate, self.timeout = rate, timeout
        self.max_seconds, self.max_requests = max_seconds, max_requests
        self.headers = headers or {}
        self.track_release = track_release
        # when given, every request appends (monotonic send time, monotonic end time, status or error name,
        # the response's `release` or None), for "which release answered when" questions
        self.timeline = timeline
        # strict (the default): HTTP/1.1 keep-alive, a request on a connection the server closed fails, no
        # retry and no check of the socket before reuse. Not strict: as browsers do, an idle socket the server
        # closed is not reused, and a GET that fails on a reused connection is sent once more.
        self.strict = strict
        # when given, a 503 whose body contains this marker (the maintenance page) is an expected answer:
        # counted in `expected_503` and recorded as MAINTENANCE_503, not as failed
        self.maintenance_marker = maintenance_marker
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._jobs: queue.Queue[float | None] = queue.Queue()
        self._workers = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        self._clock = threading.Thread(target=self._schedule, daemon=True)
        self._started = 0.0

    def _connect(self) -> http.client.HTTPConnection:
        if self.tls:  # measuring the proxy's TLS, not checking who signed the certificate
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=ssl._create_unverified_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._started = time.monotonic()
        for w in self._workers:
            w.start()
        self._clock.start()

    def stop(self) -> LoadResult:
        self._stop.set()
        self._clock.join()
        for _ in self._workers:
            self._jobs.put(None)
        for w in self._workers:
            w.join(self.timeout + 5)
        self.result.seconds = time.monotonic() - self._started
        return self.result

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Block until at least `count` requests have completed (so load is flowing before an operation)."""
        deadline = time.monotonic() + timeout
        while self.result.sent < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def _schedule(self) -> None:
        interval = 1.0 / self.rate
        n = 0
        while not self._stop.is_set() and n < self.max_requests:
            due = self._started + n * interval
            if due - self._started > self.max_seconds:
                break
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            self._jobs.put(due)
            n += 1

    def _work(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while True:
            job = self._jobs.get()
            if job is None:
                break
            if not self.strict and conn is not None and _closed_by_peer(conn):
                conn.close()  # like urllib3 and browsers: never send on a connection the server has closed
                conn = None
            if conn is None:
                conn = self._connect()
            t0 = time.perf_counter()
            sent_at = time.monotonic()
            try:
                status, body, conn = self._exchange(conn)
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                conn = None
                with self._lock:
                    self.result.sent += 1
                    self.result.errors += 1
                    self.result.statuses[type(exc).__name__] += 1
                    if self.timeline is not None:
                        self.timeline.append((sent_at, time.monotonic(), type(exc).__name__, None))
                continue
            elapsed = (time.perf_counter() - t0) * 1000
            release = None
            if self.track_release and 200 <= status < 300:
                try:
                    release = str(json.loads(body).get("release"))
                except (ValueError, AttributeError):
                    release = None
            expected = status == 503 and self.maintenance_marker is not None and self.maintenance_marker in body
            label = MAINTENANCE_503 if expected else str(status)
            with self._lock:
                r = self.result
                r.sent += 1
                r.latencies_ms.append(elapsed)
                r.statuses[label] += 1
                if 200 <= status < 300:
                    r.ok += 1
                    if release is not None:
                        r.bodies[release] += 1
                elif expected:
                    r.expected_503 += 1
                else:
                    r.non_2xx += 1
                if self.timeline is not None:
                    self.timeline.append((sent_at, time.monotonic(), label, release))
        if conn is not None:
            conn.close()

    def _exchange(self, conn: http.client.HTTPConnection | None
                  ) -> tuple[int, bytes, http.client.HTTPConnection | None]:
        """One GET. As browsers and Go's net/http do, a GET that fails on a reused keep-alive connection
        before any response byte is retried once on a new connection (counted in `retried`)."""
        reused = conn is not None and conn.sock is not None
        if conn is None:
            conn = self._connect()
        try:
            conn.request("GET", self.path, headers=self.headers)
            resp = conn.getresponse()
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            if not reused or self.strict:
                raise
            conn.close()
            with self._lock:
                self.result.retried += 1
            conn = self._connect()
            conn.request("GET", self.path, headers=self.headers)
            resp = conn.getresponse()
        body = resp.read()
        if resp.will_close:
            conn.close()
            return resp.status, body, None
        return resp.status, body, conn
