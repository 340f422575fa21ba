"""`headway loadtest`: a bounded, open-loop load check of an environment through headway's proxy.

The client is strict: HTTP/1.1 keep-alive connections, no retries, requests sent on a fixed clock at the rate
asked for whatever the answers take (open loop: a slow server does not slow the client down), and each latency
measured from the moment its request was due, so requests that wait for a free connection count that wait. Every
request that does not get an answer is an error of its kind: a connection error (refused, reset, closed by the
server), a timeout, or a 5xx answer.

The verdict compares p95 and the share of errors with thresholds (p95 <= 500 ms, errors <= 1 % unless told
otherwise). The last result is kept in the environment's state directory (`loadtest.json`) for other commands.
"""

from __future__ import annotations

import http.client
import json
import math
import queue
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headway.config.duration import parse_duration
from headway.errors import Aborted, ConfigError, HeadwayError, NotFound
from headway.state.files import atomic_write

if TYPE_CHECKING:
    from headway.config.resolve import Target
    from headway.proxy.nginx import ProxySettings

MAX_RPS = 2000
MAX_DURATION_S = 600.0
MAX_CONNECTIONS = 1000
DEFAULT_P95_MS = 500.0
DEFAULT_MAX_ERROR_SHARE = 0.01
RESULT_FILE = "loadtest.json"
PRODUCTION_NAMES = frozenset({"production", "prod", "prd", "live"})
ERROR_KINDS = ("connection", "timeout", "5xx")


class LoadTestFailed(HeadwayError):
    """The environment missed a threshold under the load asked for."""


# -- the settings, checked -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Thresholds:
    p95_ms: float = DEFAULT_P95_MS
    max_error_share: float = DEFAULT_MAX_ERROR_SHARE


@dataclass(frozen=True)
class LoadSettings:
    rps: float
    duration_s: float
    connections: int
    path: str
    timeout_s: float
    thresholds: Thresholds

    @property
    def planned(self) -> int:
        return max(1, math.floor(self.rps * self.duration_s))


def check_settings(*, rps: float, duration: str, connections: int, path: str, timeout: str, p95: str,
                   max_errors: str) -> LoadSettings:
    """The options of `headway loadtest`, each bounded; a bad one is refused with the fix."""
    if not 0 < rps <= MAX_RPS:
        raise ConfigError(f"--rps {rps:g} is out of bounds", f"give 1 to {MAX_RPS} requests per second")
    duration_s = _duration("--for", duration)
    if not 0 < duration_s <= MAX_DURATION_S:
        raise ConfigError(f"--for {duration} is out of bounds", "give more than 0s and at most 10m, e.g. --for 60s")
    if rps * duration_s < 1:
        raise ConfigError(f"--rps {rps:g} for {duration} sends no request", "raise --rps or --for")
    if not 1 <= connections <= MAX_CONNECTIONS:
        raise ConfigError(f"--connections {connections} is out of bounds", f"give 1 to {MAX_CONNECTIONS}")
    if not path.startswith("/") or any(c.isspace() or ord(c) < 32 for c in path):
        raise ConfigError(f"--path {path!r} is not a request path", "give one starting with /, e.g. --path /health")
    timeout_s = _duration("--timeout", timeout)
    if not 0 < timeout_s <= 60:
        raise ConfigError(f"--timeout {timeout} is out of bounds", "give more than 0s and at most 60s")
    p95_s = _duration("--p95", p95)
    if p95_s <= 0:
        raise ConfigError("--p95 must be more than 0", "give e.g. --p95 500ms")
    return LoadSettings(rps=float(rps), duration_s=duration_s, connections=connections, path=path,
                        timeout_s=timeout_s, thresholds=Thresholds(p95_s * 1000.0, parse_share(max_errors)))


def _duration(option: str, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError:
        raise ConfigError(f"{option} {value!r} is not a duration", f"write e.g. {option} 500ms, 30s or 2m") from None


def parse_share(text: str) -> float:
    """`1%` (or `1`, a percentage), `0.5%` → a share of 0..1."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", str(text))
    if not m or float(m.group(1)) > 100:
        raise ConfigError(f"--max-errors {text!r} is not a percentage", "write e.g. --max-errors 1% (0% to 100%)")
    return float(m.group(1)) / 100.0


def is_production(environment: str) -> bool:
    return environment.lower() in PRODUCTION_NAMES


def refuse_production(environment: str, yes: bool) -> None:
    if is_production(environment) and not yes:
        raise Aborted(f"{environment} serves real users: a load test there is refused without --yes",
                      f"run it against staging, or pass --yes to load {environment} (keep --rps modest)")


# -- where the requests go ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """How a client on the host reaches the environment through the proxy."""

    port: int
    host_header: str | None
    tls: bool = False

    def url(self, path: str) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}" + (f" (Host: {self.host_header})" if self.host_header else "")


def endpoint_for(target: Target, settings: ProxySettings) -> Endpoint:
    """The environment's first domain on the proxy's HTTP port (HTTPS with TLS), else its own port, as the
    host's agent checks it."""
    if target.domains:
        domain = next((d for d in target.domains if not d.startswith("*.")), None)
        if domain is not None:
            if target.tls is not None:
                return Endpoint(settings.https_port, domain, tls=True)
            return Endpoint(settings.http_port, domain)
    if target.port is not None:
        return Endpoint(target.port, None)
    raise ConfigError(f"{target.app}/{target.environment} has neither domains nor a port: the proxy serves it "
                      "nowhere to load", f"give environments.{target.environment} a `port:` or `domains:`")


# -- the client -------------------------------------------------------------------------------------------
@dataclass
class LoadResult:
    planned: int = 0
    requests: int = 0  # sent (or due and given up)
    responses: int = 0  # got an HTTP answer of any status
    errors: Counter[str] = field(default_factory=Counter)  # kind -> count (ERROR_KINDS)
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)  # of the answered requests, from when each was due
    seconds: float = 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_share(self) -> float:
        return self.error_count / self.requests if self.requests else 0.0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the latencies (0 when nothing answered)."""
        if not self.latencies_ms:
            return 0.0
        data = sorted(self.latencies_ms)
        rank = max(1, math.ceil(p / 100.0 * len(data)))
        return data[min(rank, len(data)) - 1]


class _Connection(http.client.HTTPConnection):
    """To 127.0.0.1, optionally TLS with the domain as SNI (the proxy picks the certificate by it)."""

    def __init__(self, port: int, timeout: float, sni: str | None) -> None:
        super().__init__("127.0.0.1", port, timeout=timeout)
        self.sni = sni

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.sni is not None:
            # measuring the proxy's answers, not who signed its certificate (it may be a staging CA's)
            context = ssl._create_unverified_context()
            self.sock = context.wrap_socket(self.sock, server_hostname=self.sni)


class LoadRun:
    """`settings.rps` requests a second for `settings.duration_s` to `endpoint`, over up to
    `settings.connections` keep-alive connections (one per worker thread)."""

    def __init__(self, endpoint: Endpoint, settings: LoadSettings) -> None:
        self.endpoint, self.settings = endpoint, settings
        self.result = LoadResult(planned=settings.planned)
        self._lock = threading.Lock()
        self._closed = False
        self._jobs: queue.Queue[float | None] = queue.Queue()
        self._headers = {"Host": endpoint.host_header} if endpoint.host_header else {}
        self._headers["User-Agent"] = "headway-loadtest"

    def run(self) -> LoadResult:
        workers = [threading.Thread(target=self._work, daemon=True, name=f"loadtest-{i}")
                   for i in range(min(self.settings.connections, self.settings.planned))]
        start = time.monotonic()
        for w in workers:
            w.start()
        interval = 1.0 / self.settings.rps
        for n in range(self.settings.planned):  # the clock: every request has its due time
            due = start + n * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the open loop, not waiting for a condition
            self._jobs.put(due)
        for _ in workers:
            self._jobs.put(None)
        # a request still queued a timeout after it was due is given up without being sent (see _work), and one
        # in flight ends by its socket timeout: the workers are done within two timeouts of the last due time
        deadline = time.monotonic() + 2 * self.settings.timeout_s + 5
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))
        self.result.seconds = time.monotonic() - start
        with self._lock:
            self._closed = True  # a worker still stuck past the deadline records nothing more
            unanswered = self.result.planned - self.result.requests
            if unanswered > 0:  # workers still stuck past the deadline: those requests timed out
                self.result.requests += unanswered
                self.result.errors["timeout"] += unanswered
            return self.result

    def _connect(self) -> _Connection:
        return _Connection(self.endpoint.port, self.settings.timeout_s,
                           self.endpoint.host_header if self.endpoint.tls else None)

    def _work(self) -> None:
        conn: _Connection | None = None
        while (due := self._jobs.get()) is not None:
            if time.monotonic() - due > self.settings.timeout_s:  # waited its whole timeout for a connection
                with self._lock:
                    if self._closed:
                        break
                    self.result.requests += 1
                    self.result.errors["timeout"] += 1
                    self.result.statuses["timeout"] += 1
                continue
            if conn is None:
                conn = self._connect()
            kind: str | None = None
            status: int | None = None
            try:
                conn.request("GET", self.settings.path, headers=self._headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if resp.will_close:
                    conn.close()
                    conn = None
            except TimeoutError:
                kind = "timeout"
            except (OSError, http.client.HTTPException):
                kind = "connection"
            done = time.monotonic()
            if kind is not None and conn is not None:
                conn.close()
                conn = None
            with self._lock:
                if self._closed:
                    break
                r = self.result
                r.requests += 1
                if status is None:
                    r.errors[kind or "connection"] += 1
                    r.statuses[kind or "connection"] += 1
                    continue
                r.responses += 1
                r.statuses[str(status)] += 1
                r.latencies_ms.append((done - due) * 1000.0)
                if status >= 500:
                    r.errors["5xx"] += 1
        if conn is not None:
            conn.close()


# -- the verdict and the record ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Report:
    record: dict[str, Any]  # exactly what loadtest.json holds
    endpoint: str
    result: LoadResult
    reasons: tuple[str, ...]  # the thresholds missed, in words

    @property
    def passed(self) -> bool:
        return bool(self.record["passed"])

    def as_json(self) -> dict[str, Any]:
        r = self.result
        return {**self.record, "url": self.endpoint, "errors_by_kind": {k: r.errors.get(k, 0) for k in ERROR_KINDS},
                "statuses": dict(sorted(r.statuses.items())), "seconds": round(r.seconds, 3),
                "missed": list(self.reasons)}


def judge(result: LoadResult, settings: LoadSettings, endpoint: str) -> Report:
    t = settings.thresholds
    p95 = result.percentile(95)
    reasons = []
    if not result.responses:
        reasons.append("no request got an answer")
    elif p95 > t.p95_ms:
        reasons.append(f"p95 {p95:.0f} ms is above {t.p95_ms:g} ms")
    if result.error_share > t.max_error_share:
        kinds = ", ".join(f"{n} {k}" for k, n in result.errors.items() if n)
        reasons.append(f"{result.error_share:.2%} of requests failed ({kinds}), more than "
                       f"{t.max_error_share:.2%}")
    record = {"finished_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
              "rps": settings.rps, "duration_s": settings.duration_s, "requests": result.requests,
              "errors": result.error_count, "error_share": round(result.error_share, 6),
              "p50_ms": round(result.percentile(50), 2), "p95_ms": round(p95, 2),
              "p99_ms": round(result.percentile(99), 2), "passed": not reasons,
              "thresholds": {"p95_ms": t.p95_ms, "max_error_share": t.max_error_share}}
    return Report(record=record, endpoint=endpoint, result=result, reasons=tuple(reasons))


def write_result(state_dir: Path, report: Report) -> Path:
    """The last result, in apps/APP/ENV/loadtest.json, replaced atomically."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / RESULT_FILE
    atomic_write(path, json.dumps(report.record, indent=2) + "\n")
    return path


def read_result(state_dir: Path) -> dict[str, Any] | None:
    """The last loadtest.json of an environment's state directory, or None."""
    try:
        data = json.loads((state_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_loadtest(target: Target, settings: LoadSettings, proxy_settings: ProxySettings, *, live: int | None,
                 proxy_running: bool, state_dir: Path,
                 announce: Callable[[Endpoint], None] | None = None) -> Report:
    """Load the environment's live release through the proxy, judge it, keep the result. `announce` hears where
    the load goes once the checks passed, just before it starts."""
    endpoint = endpoint_for(target, proxy_settings)
    if live is None:
        raise NotFound(f"nothing is deployed in {target.app}/{target.environment}: nothing to load",
                       f"deploy first: `headway deploy -e {target.environment}`")
    if not proxy_running:
        from headway.errors import ProxyError

        raise ProxyError("headway's proxy is not running on this host", "start it: `headway proxy boot`")
    if announce is not None:
        announce(endpoint)
    result = LoadRun(endpoint, settings).run()
    report = judge(result, settings, endpoint.url(settings.path))
    write_result(state_dir, report)
    return report
