"""headway loadtest's settings, verdict and client, against a real HTTP server in this process (no Docker)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from headway.errors import Aborted, ConfigError
from headway.observe.loadtest import (
    Endpoint,
    LoadResult,
    LoadRun,
    check_settings,
    judge,
    parse_share,
    read_result,
    refuse_production,
    write_result,
)

FIELDS = {"finished_at", "rps", "duration_s", "requests", "errors", "error_share", "p50_ms", "p95_ms", "p99_ms",
          "passed", "thresholds"}


def settings(**over: object):  # type: ignore[no-untyped-def]
    args = {"rps": 100.0, "duration": "1s", "connections": 8, "path": "/", "timeout": "2s", "p95": "500ms",
            "max_errors": "1%", **over}
    return check_settings(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("over", "named"), [
    ({"rps": 2001}, "--rps"), ({"rps": 0}, "--rps"), ({"duration": "10m1s"}, "--for"), ({"duration": "0s"}, "--for"),
    ({"duration": "soon"}, "--for"), ({"connections": 0}, "--connections"), ({"connections": 5000}, "--connections"),
    ({"path": "health"}, "--path"), ({"timeout": "2m"}, "--timeout"), ({"p95": "0ms"}, "--p95"),
    ({"max_errors": "150%"}, "--max-errors"), ({"max_errors": "a lot"}, "--max-errors"),
    ({"rps": 0.5, "duration": "1s"}, "--rps")])
def test_bounds_are_refused_with_the_fix(over: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings(**over)
    assert named in info.value.message and info.value.fix


def test_bounds_accepted_at_their_limits() -> None:
    s = settings(rps=2000, duration="10m", p95="1.5s", max_errors="0.5%")
    assert (s.rps, s.duration_s, s.planned) == (2000.0, 600.0, 1_200_000)
    assert s.thresholds.p95_ms == 1500.0 and s.thresholds.max_error_share == 0.005
    assert parse_share("2") == 0.02 and parse_share("0%") == 0.0


def test_production_needs_yes() -> None:
    for env in ("production", "prod", "live"):
        with pytest.raises(Aborted) as info:
            refuse_production(env, yes=False)
        assert "--yes" in (info.value.fix or "")
        refuse_production(env, yes=True)
    refuse_production("staging", yes=False)


def test_verdict_and_percentiles() -> None:
    s = settings()
    r = LoadResult(planned=200, requests=200, responses=199, latencies_ms=[float(i) for i in range(1, 200)])
    r.errors["connection"] = 1
    ok = judge(r, s, "http://127.0.0.1:1/")
    assert ok.passed and ok.record["p50_ms"] == 100.0 and ok.record["p95_ms"] == 190.0
    assert ok.record["p99_ms"] == 198.0 and ok.record["error_share"] == 0.005
    r.errors["5xx"] = 2  # 3 of 200 = 1.5 % > 1 %
    bad = judge(r, s, "x")
    assert not bad.passed and "1.50% of requests failed" in bad.reasons[0]
    slow = LoadResult(planned=10, requests=10, responses=10, latencies_ms=[600.0] * 10)
    verdict = judge(slow, s, "x")
    assert not verdict.passed and verdict.reasons == ("p95 600 ms is above 500 ms",)
    assert set(verdict.record) == FIELDS
    assert verdict.record["thresholds"] == {"p95_ms": 500.0, "max_error_share": 0.01}
    assert verdict.record["finished_at"].endswith("Z")


def test_result_is_written_atomically_with_exactly_its_fields(tmp_path: Path) -> None:
    r = LoadResult(planned=5, requests=5, responses=5, latencies_ms=[1.0] * 5)
    path = write_result(tmp_path / "apps" / "a" / "staging", judge(r, settings(), "x"))
    assert path.name == "loadtest.json" and set(json.loads(path.read_text())) == FIELDS
    assert read_result(path.parent) == json.loads(path.read_text())
    assert [p.name for p in path.parent.iterdir()] == ["loadtest.json"]  # no temporary file left


@pytest.fixture
def server() -> Iterator[tuple[int, list[str]]]:
    """/ok answers at once, /slow after 300 ms, /boom with 500, /close closes without answering; records Host."""
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            hosts.append(self.headers.get("Host", ""))
            if self.path == "/close":
                self.close_connection = True
                return
            if self.path == "/slow":
                time.sleep(0.3)  # the server being slow, on purpose
            status = 500 if self.path == "/boom" else 200
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:  # the client gave up (its timeout)
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd.server_address[1], hosts
    httpd.shutdown()
    httpd.server_close()


def test_client_sends_at_the_rate_on_keepalive_with_the_host_header(server: tuple[int, list[str]]) -> None:
    port, hosts = server
    s = settings(rps=200, duration="1s", path="/ok")
    started = time.monotonic()
    result = LoadRun(Endpoint(port, "shop.example.com"), s).run()
    took = time.monotonic() - started
    assert result.requests == 200 and result.responses == 200 and result.error_count == 0
    assert 0.9 < took < 3.0  # open loop: about the duration asked for
    assert set(hosts) == {"shop.example.com"}
    assert judge(result, s, "x").passed


def test_client_counts_each_kind_of_error(server: tuple[int, list[str]]) -> None:
    port, _ = server
    boom = LoadRun(Endpoint(port, None), settings(rps=50, duration="1s", path="/boom")).run()
    assert boom.errors["5xx"] == 50 and boom.statuses["500"] == 50
    closed = LoadRun(Endpoint(port, None), settings(rps=20, duration="1s", path="/close")).run()
    assert closed.errors["connection"] == 20 and closed.responses == 0  # no retry
    slow = LoadRun(Endpoint(port, None), settings(rps=20, duration="1s", path="/slow", timeout="100ms")).run()
    assert slow.errors["timeout"] == 20
    # open loop: with one connection a 300 ms answer makes every later request wait, and that wait is latency
    queued = LoadRun(Endpoint(port, None), settings(rps=10, duration="1s", path="/slow", connections=1,
                                                          timeout="5s")).run()
    assert queued.responses == 10 and queued.percentile(95) > 1500
    refused = LoadRun(Endpoint(1, None), settings(rps=10, duration="1s")).run()
    assert refused.errors["connection"] == 10
