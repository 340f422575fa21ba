"""Health gates: a new container gets traffic (or replaces an old one) only after it proves healthy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit


from headway.config.model import CommandHealth, HttpHealth
from headway.engine.base import Engine

if TYPE_CHECKING:
    from headway.engine.base import Container


@dataclass(frozen=True)
class HealthTarget:
    container: Container
    role: str
    health: HttpHealth | CommandHealth | None
    port: int | None
    network: str
    host_header: str | None = None


@dataclass(frozen=True)
class HealthResult:
    container: str
    role: str
    healthy: bool
    reason: str  # what the last check saw, in words a person can act on
    seconds: float


def http_get(url: str, host: str | None, timeout: float, *, limit: int = 4096) -> tuple[int, dict[str, str], str]:
    """One GET without following redirects: (status, headers, the first `limit` bytes of the body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", path, headers={"Host": host} if host else {})
        resp = conn.getresponse()
        body = resp.read(limit).decode(errors="replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def http_check(url: str, host: str | None, timeout: float, expected: int) -> tuple[bool, str]:
    try:
        status, headers, body = http_get(url, host, timeout)
    except TimeoutError:
        return False, f"GET {url} timed out after {timeout:g}s"
    except (OSError, http.client.HTTPException) as exc:
        return False, f"GET {url} failed: {type(exc).__name__} ({exc})"
    if status == expected:
        return True, f"GET {url} → {status}"
    hint = ""
    if 300 <= status < 400:
        hint = f" (redirect to {headers.get('location')}; health checks do not follow redirects)"
    text = body.strip().replace("\n", " ")[:160]
    return False, f"GET {url} → {status}, expected {expected}{hint}: {text}"


class HealthGate:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.clock = clock

    def wait_all(self, targets: list[HealthTarget], deadline_s: float) -> list[HealthResult]:
        """Check every target in parallel; each passes or fails on its own, none waits past the deadline."""
        if not targets:
            return []
        deadline = self.clock() + deadline_s
        from concurrent.futures import ThreadPoolExecutor  # threads (and logging) load with the first gate

        with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
            return list(pool.map(lambda t: self.wait_one(t, deadline), targets))

    def wait_one(self, target: HealthTarget, deadline: float) -> HealthResult:
        started = self.clock()
        health = target.health
        name = target.container.name or target.container.id
        start_period = health.start_period if health else 0.0
        interval = health.interval if health else 0.5
        attempts = health.attempts if health else 1
        if isinstance(health, CommandHealth) and health.stays_running is not None:
            return self._stays_running(target, health.stays_running, deadline, started)
        if start_period:
            self._pause(min(start_period, max(0.0, deadline - self.clock())))
        reason = "not checked"
        for attempt in range(attempts):
            exited = self._exited(target.container)
            if exited:
                return HealthResult(name, target.role, False, exited, self.clock() - started)
            ok, reason = self._check_once(target)
            if ok:
                return HealthResult(name, target.role, True, reason, self.clock() - started)
            if self.clock() + interval > deadline:
                reason += " (deadline reached)"
                break
            if attempt + 1 < attempts:
                self._pause(interval)
        return HealthResult(name, target.role, False, reason, self.clock() - started)

    def _check_once(self, target: HealthTarget) -> tuple[bool, str]:
        health = target.health
        if health is None:
            return True, "running (no health check configured)"
        if isinstance(health, HttpHealth):
            address = self.engine.endpoint(target.container, target.network, target.port or 80)
            if address is None:
                return False, "container has no address yet"
            url = f"http://{address}{health.path}"
            return http_check(url, health.host or target.host_header, health.timeout, health.status)
        argv = health.argv or []
        result = self.engine.exec(target.container, argv, timeout=health.timeout)
        if result.timed_out:
            return False, f"`{' '.join(argv)}` timed out after {health.timeout:g}s"
        if result.exit_code == 0:
            return True, f"`{' '.join(argv)}` exited 0"
        out = result.output.strip().splitlines()[-1:] or [""]
        return False, f"`{' '.join(argv)}` exited {result.exit_code}: {out[0][:160]}"

    def _stays_running(self, target: HealthTarget, seconds: float, deadline: float,
                       started: float) -> HealthResult:
        name = target.container.name or target.container.id
        until = min(deadline, self.clock() + seconds)
        while self.clock() < until:
            exited = self._exited(target.container)
            if exited:
                return HealthResult(name, target.role, False, exited, self.clock() - started)
            self._pause(min(0.25, max(0.0, until - self.clock())))
        exited = self._exited(target.container)
        if exited:
            return HealthResult(name, target.role, False, exited, self.clock() - started)
        return HealthResult(name, target.role, True, f"stayed running for {seconds:g}s", self.clock() - started)

    def _exited(self, container: Container) -> str | None:
        state = self.engine.state(container)
        restarts = int(container.attrs.get("RestartCount", 0) or 0)
        if restarts:  # the engine restarted it: it exited at least once since headway started it
            code = state.get("ExitCode") if not state.get("Running") else self.engine.last_exit_code(container)
            return (f"container exited with code {code if code is not None else 'unknown'} and was restarted "
                    f"{restarts} time(s) (a crash loop)")
        if state.get("Running"):
            return None
        if state.get("Restarting") or state.get("Status") == "restarting":
            return f"container is restarting (last exit code {state.get('ExitCode')})"
        return f"container exited with code {state.get('ExitCode')}"

    @staticmethod
    def _pause(seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)  # the configured interval between probes
