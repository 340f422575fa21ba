"""Drains that lose nothing: long-lived connections and queue jobs across a deploy, a scale-down and a stop.

The fixture app (tests/fixtures/apps/drains) has a websocket and a server-sent-events endpoint that name the
release serving them, and a Redis queue worker that records every job it finishes and the signal it stopped on.
Everything is real: the Docker Engine, headway's nginx, Redis; the websocket client is the few lines below.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import FIXTURES, AppDir, RunningProxy, _cleanup_app, free_port
from tests.integration.test_example_shop import shop  # noqa: F401 - the example app's fixture

from headway.engine import labels as L
from headway.proxy.nginx import http_get

pytestmark = [pytest.mark.docker, pytest.mark.proxy]

_spec = importlib.util.spec_from_file_location("drains_app", FIXTURES / "apps" / "drains" / "app.py")
assert _spec is not None and _spec.loader is not None
drains = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(drains)  # its RESP client talks to the environment's Redis from here
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- clients ---------------------------------------------------------------------------------------------------
class WebSocket:
    """A websocket client over a raw socket (RFC 6455: masked client frames, text and close)."""

    def __init__(self, port: int, path: str = "/ws") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, f"the connection closed during the handshake: {self.buf!r}"
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        assert lines[0].split()[1] == "101", f"no upgrade: {head!r}"
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert headers.get("sec-websocket-accept") == expected, headers
        self.close_code: int | None = None
        self.closed_at: float | None = None

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("closed without a close frame")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self) -> tuple[int, bytes]:
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n)

    def ask(self, text: str) -> dict[str, Any] | None:
        """One message and its answer; None once the server has closed the socket (close_code says how)."""
        try:
            self.send(0x1, text.encode())
            opcode, payload = self.recv()
        except OSError:
            self.closed_at = self.closed_at or time.monotonic()
            return None
        if opcode == 0x8:
            self.closed_at = time.monotonic()
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            return None
        assert opcode == 0x1, opcode
        reply: dict[str, Any] = json.loads(payload)
        assert reply["echo"] == text
        return reply

    def close(self) -> None:
        self.send(0x8, struct.pack("!H", 1000))
        opcode, _ = self.recv()
        assert opcode == 0x8
        self.sock.close()


class EventStream:
    """A server-sent-events client reading in a thread: every event with the time it arrived."""

    def __init__(self, port: int, path: str = "/events") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
                          .encode())
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raw = b""
        try:
            while b"\r\n\r\n" not in raw:
                chunk = self.sock.recv(4096)
                if not chunk:
                    return
                raw += chunk
            head, raw = raw.split(b"\r\n\r\n", 1)
            assert b" 200 " in head.split(b"\r\n")[0], head
            chunked = b"chunked" in head.lower()
            body = b""
            while True:
                if chunked:  # de-chunk what has arrived
                    while b"\r\n" in raw:
                        size_line, rest = raw.split(b"\r\n", 1)
                        size = int(size_line.split(b";")[0], 16)
                        if len(rest) < size + 2:
                            break
                        if size == 0:
                            return
                        body, raw = body + rest[:size], rest[size + 2:]
                else:
                    body, raw = body + raw, b""
                while b"\n\n" in body:
                    event, body = body.split(b"\n\n", 1)
                    for line in event.decode().splitlines():
                        if line.startswith("data: "):
                            self.events.append((time.monotonic(), json.loads(line[6:])))
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                raw += chunk
        except OSError:
            return
        finally:
            self.ended.set()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.ended.wait(10)


class Background:
    """A call in a thread: its result or exception, and whether it is still running."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished_at: float | None = None

        def run() -> None:
            try:
                self.result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                self.error = exc
            finally:
                self.finished_at = time.monotonic()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"still running after {timeout}s"
        if self.error is not None:
            raise self.error
        return self.result


def wait_until(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(every)  # polling a condition with a deadline


# -- the app ---------------------------------------------------------------------------------------------------
@pytest.fixture
def drains_app(tmp_path: Path, proxy: RunningProxy, docker_engine: Any) -> Iterator[AppDir]:
    name = f"d{uuid.uuid4().hex[:8]}"
    root = tmp_path / "app"
    shutil.copytree(FIXTURES / "apps" / "drains", root, ignore=shutil.ignore_patterns("__pycache__"))
    ports = {"production": free_port()}
    text = (root / "headway.yml").read_text().replace("app: drains", f"app: {name}")
    (root / "headway.yml").write_text(text.replace("port: 18490", f"port: {ports['production']}"))
    yield AppDir(root, name, proxy.state_dir, ports)
    _cleanup_app(docker_engine, name)
    shutil.rmtree(proxy.state_dir / "apps" / name, ignore_errors=True)
    if proxy.proxy.routes.get(name, "production") is not None:
        proxy.proxy.drop_route(name, "production")


def served_release(app: AppDir) -> str:
    return str(httpx.get(app.url(), timeout=5).json()["release"])


def in_flight(proxy: RunningProxy, peers: list[str]) -> int:
    _, _, body = http_get(f"http://127.0.0.1:{proxy.control_port}/active?peers={','.join(peers)}", None, 2.0)
    return int(body.strip())


def proxy_generation(proxy: RunningProxy) -> str:
    _, _, body = http_get(f"http://127.0.0.1:{proxy.control_port}/generation", None, 2.0)
    return str(body.strip())


def redis_of(hw: Any) -> Any:
    """The RESP client of the fixture app, connected to the environment's Redis at its container address."""
    container = next(c for c in hw.deployer.accessories() if c.labels.get(L.ROLE) == "redis")
    ip = hw.engine.ip_address(container, hw.deployer.network)
    return drains.Redis(f"redis://{ip}:6379/0")


def web_peers(hw: Any, deploy: int) -> list[str]:
    d = hw.deployer
    # the proxy counts requests in flight per ip:port; routing names peers role@ip:port
    return [p.rsplit("@", 1)[-1] for p in d._upstreams(d._web_only(d.containers(deploy=deploy,
                                                                                 include_stopped=False)))]


def running(hw: Any, deploy: int, role: str | None = None) -> list[Any]:
    return list(hw.deployer.containers(deploy=deploy, role=role, include_stopped=False))


# -- websockets and event streams ------------------------------------------------------------------------------
def test_websocket_and_event_stream_stay_on_the_old_release_until_they_close(drains_app: AppDir,
                                                                          proxy: RunningProxy) -> None:
    hw = drains_app.headway()
    hw.deploy(version="v1")
    port = drains_app.ports["production"]
    ws = WebSocket(port)
    first = ws.ask("hello")
    assert first is not None and first["release"] == "v1"
    sse = EventStream(port)
    wait_until(lambda: len(sse.events) >= 2, 10, "events from v1")
    old_peers = web_peers(hw, 1)
    assert in_flight(proxy, old_peers) == 2  # the upgraded connection and the stream each count as in flight

    generation = proxy_generation(proxy)
    deploy = Background(lambda: drains_app.headway().deploy(version="v2"))
    answers: list[str] = []

    def talk() -> None:
        reply = ws.ask(f"m{len(answers)}")
        assert reply is not None, f"the websocket was closed ({ws.close_code})"
        answers.append(reply["release"])

    deadline = time.monotonic() + 60
    while served_release(drains_app) != "v2":  # new requests go to v2 from the switch on
        assert time.monotonic() < deadline and deploy.alive(), deploy.error
        talk()
    switched = time.monotonic()
    while time.monotonic() < switched + 1.5:
        talk()
    after = [e for t, e in sse.events if t > switched]
    assert set(answers) == {"v1"}, answers  # the socket stays on the release it was opened on
    assert len(answers) > 10 and after and {e["release"] for e in after} == {"v1"}, after
    assert deploy.alive(), "the drain did not wait for the open connections"
    assert len(running(hw, 1, "web")) == 1 and in_flight(proxy, old_peers) == 2

    ws.close()
    wait_until(lambda: in_flight(proxy, old_peers) == 1, 5, "the closed websocket to leave the counter")
    assert deploy.alive(), "the event stream still holds the drain"
    n = len(sse.events)
    wait_until(lambda: len(sse.events) > n + 2, 5, "more events on the old release")
    assert {e["release"] for _, e in sse.events} == {"v1"}

    sse.close()
    closed = time.monotonic()
    outcome = deploy.join(25)
    assert outcome.record.outcome == "live"
    assert deploy.finished_at is not None and deploy.finished_at - closed < 10  # the drain is 30 s
    assert running(hw, 1) == [], "the old release is stopped once drained"
    assert in_flight(proxy, old_peers) == 0
    assert served_release(drains_app) == "v2"
    assert proxy_generation(proxy) == generation  # the switch was routing data: nginx did not reload


def test_websocket_outliving_the_drain_is_closed_by_the_old_release_stopping(drains_app: AppDir) -> None:
    drains_app.edit_config("drain_timeout: 30s", "drain_timeout: 2s")
    hw = drains_app.headway()
    hw.deploy(version="v1")
    ws = WebSocket(drains_app.ports["production"])
    deploy = Background(lambda: drains_app.headway().deploy(version="v2"))
    answers: list[str] = []
    switched: float | None = None
    deadline = time.monotonic() + 90
    while ws.close_code is None and ws.closed_at is None:
        assert time.monotonic() < deadline, "the websocket was never closed"
        reply = ws.ask(f"m{len(answers)}")
        if reply is not None:
            answers.append(reply["release"])
        if switched is None and served_release(drains_app) == "v2":
            switched = time.monotonic()
    outcome = deploy.join(30)
    assert switched is not None and ws.closed_at is not None
    assert set(answers) == {"v1"}
    # open until the drain timeout was over, then closed by the old web container going away (1001)
    assert ws.closed_at - switched >= 2.0 - 0.3, ws.closed_at - switched
    assert ws.close_code == 1001, ws.close_code
    assert outcome.record.outcome == "live" and served_release(drains_app) == "v2"
    old_web = hw.deployer.containers(deploy=1, role="web")
    assert old_web and hw.engine.state(old_web[0])["ExitCode"] == 0  # stopped by SIGTERM, not killed


def test_idle_websocket_is_closed_after_the_read_timeout(drains_app: AppDir, proxy: RunningProxy) -> None:
    drains_app.edit_config("  production:\n", "  production:\n    proxy: {read_timeout: 2s}\n")
    hw = drains_app.headway()
    hw.deploy(version="v1")
    port, peers = drains_app.ports["production"], web_peers(hw, 1)
    idle, busy = WebSocket(port), WebSocket(port)
    assert in_flight(proxy, peers) == 2
    opened = time.monotonic()
    while idle.closed_at is None:  # the busy one talks every 0.5 s; the idle one is read when nginx closes it
        assert time.monotonic() < opened + 10, "the idle websocket was not closed"
        reply = busy.ask("ping")
        assert reply is not None and reply["release"] == "v1"
        idle.sock.settimeout(0.5)
        try:
            if not idle.sock.recv(1):
                idle.closed_at = time.monotonic()
        except TimeoutError:
            pass
    assert 2.0 - 0.3 <= idle.closed_at - opened < 4, idle.closed_at - opened
    wait_until(lambda: in_flight(proxy, peers) == 1, 5, "the idle socket to leave the counter")
    assert busy.ask("still there") is not None
    busy.close()
    wait_until(lambda: in_flight(proxy, peers) == 0, 5, "the counter back at 0")


# -- queue workers ---------------------------------------------------------------------------------------------
class Producer:
    """Enqueues job ids (LPUSH jobs) at a steady rate until stopped."""

    def __init__(self, redis: Any, rate: float) -> None:
        self.redis, self.rate = redis, rate
        self.sent: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(1 / self.rate):
            job = f"j{len(self.sent):04d}"
            self.redis.call("LPUSH", "jobs", job)
            self.sent.append(job)

    def stop(self) -> list[str]:
        self.stopping.set()
        self.thread.join(5)
        return self.sent


def settle(r: Any, expected: int, timeout: float = 60) -> dict[str, int]:
    """Every job processed: the queue and every processing list empty, `expected` jobs recorded."""
    def done() -> bool:
        lists = [k for k in r.call("KEYS", "jobs:processing:*") if r.call("LLEN", k)]
        return r.call("LLEN", "jobs") == 0 and not lists and r.call("HLEN", "processed") >= expected
    wait_until(done, timeout, f"{expected} jobs processed", every=0.2)
    flat = r.call("HGETALL", "processed")
    return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}


def stops(r: Any) -> list[dict[str, str]]:
    out = []
    for line in r.call("LRANGE", "stopped", 0, -1):
        worker, sig, job, at = line.split()
        out.append({"worker": worker, "signal": sig, "job": job, "at": at})
    return out


def processed_by(r: Any) -> dict[str, list[str]]:
    by: dict[str, list[str]] = {}
    for line in r.call("LRANGE", "processed:log", 0, -1):
        job, release, _ = line.split()
        by.setdefault(job, []).append(release)
    return by


def test_workers_finish_their_jobs_across_a_deploy_exactly_once(drains_app: AppDir) -> None:
    hw = drains_app.headway()
    hw.deploy(version="v1")
    old_workers = running(hw, 1, "worker")
    assert len(old_workers) == 2
    assert {hw.engine.client.containers.get(c.id).attrs["Config"]["StopSignal"] for c in old_workers} == {"SIGQUIT"}
    r = redis_of(hw)
    producer = Producer(redis_of(hw), rate=12)  # faster than four workers at 0.5 s a job: all stay busy
    wait_until(lambda: len(producer.sent) >= 8, 10, "jobs enqueued")
    hw.deploy(version="v2")
    wait_until(lambda: len(processed_by(r)) > 0 and "v2" in {x for v in processed_by(r).values() for x in v}, 20,
               "v2's workers taking jobs")
    sent = producer.stop()
    counts = settle(r, len(sent))
    assert set(counts) == set(sent), "a job was lost or invented"
    assert {job: n for job, n in counts.items() if n != 1} == {}, "a job was processed twice"
    by = processed_by(r)
    assert {rel for v in by.values() for rel in v} == {"v1", "v2"}
    # each old worker got the role's stop signal while working, finished that job, and exited 0
    old_stops = [s for s in stops(r) if s["worker"].endswith("-v1")]
    assert len(old_stops) == 2 and {s["signal"] for s in old_stops} == {"SIGQUIT"}, old_stops
    in_hand = [s["job"] for s in old_stops if s["job"] != "-"]
    assert in_hand, f"no worker was in the middle of a job when it was stopped: {old_stops}"
    for job in in_hand:
        assert by[job] == ["v1"], (job, by[job])
    assert all(hw.engine.state(c)["ExitCode"] == 0 for c in old_workers)


def test_a_worker_killed_at_its_stop_timeout_loses_no_job(drains_app: AppDir) -> None:
    # v1's worker takes a minute per job and has 1 s to stop
    drains_app.edit_config('JOB_SECONDS: "0.5"', 'JOB_SECONDS: "60"')
    drains_app.edit_config("stop_timeout: 10s", "stop_timeout: 1s")
    drains_app.edit_config("replicas: 2", "replicas: 1")
    hw = drains_app.headway()
    hw.deploy(version="v1")
    r = redis_of(hw)
    (old,) = running(hw, 1, "worker")
    jobs = ["k1", "k2", "k3"]
    r.call("LPUSH", "jobs", *jobs)
    held = wait_until(lambda: [j for k in r.call("KEYS", "jobs:processing:*") for j in r.call("LRANGE", k, 0, -1)],
                      10, "the v1 worker holding a job")
    drains_app.edit_config('JOB_SECONDS: "60"', 'JOB_SECONDS: "0.5"')  # v2's worker is quick
    started = time.monotonic()
    drains_app.headway().deploy(version="v2")  # the old worker gets SIGQUIT mid-job and 1 s to finish it
    assert time.monotonic() - started < 30
    state = hw.engine.state(old)
    assert state["ExitCode"] == 137, state  # SIGKILLed at the role's stop_timeout, not after Docker's 10 s
    assert not [s for s in stops(r) if s["worker"].endswith("-v1")]  # it never got to finish
    counts = settle(r, len(jobs))
    assert set(counts) == set(jobs) and all(n >= 1 for n in counts.values()), counts  # at least once
    by = processed_by(r)
    assert by[held[0]] == ["v2"], by  # the job the killed worker held went back to the queue, done by v2


def test_scale_down_and_stop_send_the_stop_signal_and_lose_no_job(drains_app: AppDir) -> None:
    hw = drains_app.headway()
    hw.deploy(version="v1")
    r = redis_of(hw)
    jobs = [f"s{i:02d}" for i in range(40)]
    r.call("LPUSH", "jobs", *jobs)  # a backlog: both workers stay busy
    wait_until(lambda: r.call("HLEN", "processed") >= 2, 10, "the workers under way")
    hw.scale({"worker": 1})
    (removed,) = stops(r)
    assert removed["signal"] == "SIGQUIT" and removed["job"] != "-", removed
    assert len(running(hw, 1, "worker")) == 1
    hw.deployer.stop()
    assert [s["signal"] for s in stops(r)] == ["SIGQUIT", "SIGQUIT"]
    assert running(hw, 1) == []
    flat = r.call("HGETALL", "processed")
    counts = {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}
    waiting = r.call("LRANGE", "jobs", 0, -1)
    assert not [k for k in r.call("KEYS", "jobs:processing:*") if r.call("LLEN", k)]
    assert set(counts) | set(waiting) == set(jobs) and not set(counts) & set(waiting)  # none lost
    assert set(counts.values()) == {1}  # none twice
    assert all(counts.get(s["job"]) == 1 for s in stops(r) if s["job"] != "-")  # the jobs in hand were finished


# -- the example shop's worker ---------------------------------------------------------------------------------
SHOP_WORKER = "    command: python -m app.worker\n    replicas: 1\n"


def shop_redis(hw: Any, worker: Any, expression: str) -> str:
    """Evaluate `expression` (with `r`, a client of the environment's Redis) inside a worker container."""
    code = f"import os, redis; r = redis.Redis.from_url(os.environ['REDIS_URL']); print({expression})"
    result = hw.engine.exec(worker, ["python", "-c", code], timeout=20)
    assert result.exit_code == 0, result.output
    return str(result.output.strip())


def test_shop_worker_finishes_its_order_on_sigterm_and_a_killed_one_loses_none(shop: AppDir) -> None:  # noqa: F811
    # s1's worker takes a minute per order and gets 1 s to stop: it is killed in the middle of one
    shop.edit_config(SHOP_WORKER, SHOP_WORKER + '    stop_timeout: 1s\n'
                                               '    env: {WORK_SECONDS: "60", HEARTBEAT_TTL: "2"}\n')
    hw = shop.headway()
    first = hw.deploy(version="s1").record.number
    url = shop.url()
    in_hand = "sum(r.llen(k) for k in r.keys('orders:processing:*'))"
    order = httpx.post(url + "orders", json={"item": "lamp", "qty": 1}, timeout=10).json()["id"]
    (w1,) = running(hw, first, "worker")
    wait_until(lambda: shop_redis(hw, w1, in_hand) == "1", 20, "the s1 worker holding the order", every=0.2)
    # s2's worker: 3 s per order, 10 s to stop
    shop.edit_config("    stop_timeout: 1s\n", "    stop_timeout: 10s\n")
    shop.edit_config('WORK_SECONDS: "60"', 'WORK_SECONDS: "3"')
    hw = shop.headway()
    second = hw.deploy(version="s2").record.number
    assert hw.engine.state(w1)["ExitCode"] == 137  # SIGKILLed at its stop timeout, the order in hand
    (w2,) = running(hw, second, "worker")
    done = wait_until(lambda: (o := httpx.get(f"{url}orders/{order}", timeout=5).json())["status"] == "done" and o,
                      30, "the order given back to the queue and done by s2")
    assert done["processed_at"]
    assert f"order {order}: done" in "\n".join(hw.engine.logs(w2))  # at least once: s2 did it

    # graceful: SIGTERM in the middle of an order finishes it, takes no other, and leaves nothing to redeliver
    order = httpx.post(url + "orders", json={"item": "desk", "qty": 1}, timeout=10).json()["id"]
    waiting = httpx.post(url + "orders", json={"item": "chair", "qty": 1}, timeout=10).json()["id"]
    wait_until(lambda: shop_redis(hw, w2, in_hand) == "1", 20, "the s2 worker holding the order", every=0.2)
    hw.deployer.stop()
    assert hw.engine.state(w2)["ExitCode"] == 0
    logs = "\n".join(hw.engine.logs(w2))
    assert "finishing the current order" in logs and f"order {order}: done" in logs, logs
    assert f"order {waiting}:" not in logs  # no new one taken after the signal
    hw.deployer.start()
    (w2,) = running(hw, second, "worker")
    # a restarted worker gives back what its processing list holds first, before the queue: had the finished
    # order been left there, it would be done again before the waiting one
    wait_until(lambda: httpx.get(f"{url}orders/{waiting}", timeout=5).json()["status"] == "done", 30,
               "the order that waited in the queue done after the start")
    assert httpx.get(f"{url}orders/{order}", timeout=5).json()["status"] == "done"
    logs = "\n".join(hw.engine.logs(w2))
    assert logs.count(f"order {order}: done") == 1 and f"order {order}: not found or already done" not in logs
    assert shop_redis(hw, w2, in_hand) == "0" and shop_redis(hw, w2, "r.llen('orders')") == "0"
