"""The edge against real nginx and real traffic: security defaults, maintenance mode, canary releases."""

from __future__ import annotations

import gzip
import json
import threading
import time

import httpx
import pytest

from bench.loadgen import SteadyLoad
from headway.errors import CanaryFailed, NotFound

pytestmark = [pytest.mark.docker, pytest.mark.proxy]

CANARY = """\
  strategy: canary
  canary:
    steps: [{weight: 20, duration: 3s}, {weight: 60, duration: 3s}]
    analysis: {interval: 1s, min_requests: 15, success_rate: 99, p95: 500ms, max_wait: 20s}
"""


def test_security_headers_gzip_and_request_id(tiny_app):
    tiny_app.set_behavior(greeting="x" * 4000)
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    r = httpx.get(tiny_app.url(), headers={"Accept-Encoding": "gzip"})
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert r.headers.get("content-encoding") == "gzip"
    assert r.json()["greeting"] == "x" * 4000
    assert len(r.headers["x-request-id"]) >= 16
    # the ACME path belongs to the proxy, whatever the app does with it
    proxy_dir = tiny_app.state_dir / "proxy" / "acme" / ".well-known" / "acme-challenge"
    (proxy_dir / "probe-token").write_text("proxy-owned")
    try:
        assert httpx.get(tiny_app.url(path="/.well-known/acme-challenge/probe-token")).text == "proxy-owned"
    finally:
        (proxy_dir / "probe-token").unlink()
    assert "strict-transport-security" not in r.headers  # only under TLS
    raw = httpx.get(tiny_app.url(), headers={"Accept-Encoding": "gzip"})
    assert raw.headers.get("vary") == "Accept-Encoding"
    assert gzip  # the client decoded it above


def test_maintenance_under_load(tiny_app):
    hw = tiny_app.headway()
    with pytest.raises(NotFound):
        hw.maintenance(True)  # never deployed: a clear error
    hw.deploy(version="v1")
    with SteadyLoad(tiny_app.url(), rate=150, max_seconds=60) as load:
        load.wait_for(100)
        hw.maintenance(True, message="Back at 14:00", allow=["10.9.9.9"])
        load.wait_for(load.result.sent + 150)
        page = httpx.get(tiny_app.url())
        assert page.status_code == 503 and "Back at 14:00" in page.text
        assert page.headers["retry-after"] == "120"
        health = httpx.get(tiny_app.url(path="/health"))
        assert health.status_code == 200  # health checks still reach the app
        hw.maintenance(False)
        load.wait_for(load.result.sent + 150)
    statuses = load.result.statuses
    assert load.result.errors == 0, load.result.summary()
    assert set(statuses) == {"200", "503"}, statuses  # nothing but the intended 503s
    assert httpx.get(tiny_app.url()).status_code == 200


def test_maintenance_survives_proxy_restart_and_allows_listed_ips(tiny_app, proxy):
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    hw.maintenance(True, allow=["127.0.0.1"])
    assert httpx.get(tiny_app.url()).status_code == 200  # we are the allowed address
    hw.maintenance(True, allow=[])
    assert httpx.get(tiny_app.url()).status_code == 503
    container = proxy.proxy.container()
    container.restart(timeout=5)
    proxy.proxy.boot()  # idempotent: waits until the proxy serves its generation again
    assert httpx.get(tiny_app.url(), timeout=5).status_code == 503
    assert hw.status()["maintenance"] is not None
    result = tiny_app.cli("status", "-e", "production")
    assert "MAINTENANCE" in result.stdout
    hw.maintenance(False)
    # a later deploy keeps the route's maintenance state as it is (off here)
    hw.deploy(version="v2")
    assert httpx.get(tiny_app.url()).status_code == 200


def test_bad_canary_rolls_back_by_itself(tiny_app):
    tiny_app.edit_config("  drain_timeout: 5s\n", "  drain_timeout: 5s\n" + CANARY)
    hw = tiny_app.headway()
    hw.deploy(version="v1")  # first deploy: nothing to compare with, a plain switch
    tiny_app.set_behavior(fail_every=4)  # 25% of the new release's answers are 500
    with SteadyLoad(tiny_app.url(), rate=100, max_seconds=60) as load:
        load.wait_for(50)
        with pytest.raises(CanaryFailed) as info:
            hw.deploy(version="bad")
        after = load.result.sent
        load.wait_for(after + 100)
    assert "success rate" in str(info.value)
    assert hw.state.history()[-1].outcome == "failed" and "success rate" in (hw.state.history()[-1].error or "")
    result = load.result
    # only canary requests can fail, and the canary got 20% of them at most before the breach was seen
    assert result.errors == 0
    assert 0 < result.non_2xx <= 0.25 * 0.2 * result.sent + 5, result.summary()
    assert httpx.get(tiny_app.url()).json()["release"] == "v1"
    assert hw.deployer.containers(deploy=2) == []
    assert hw.proxy.routes.get(tiny_app.name, "production").canary is None


def test_good_canary_promotes_through_all_steps(tiny_app):
    tiny_app.edit_config("  drain_timeout: 5s\n", "  drain_timeout: 5s\n" + CANARY)
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    tiny_app.set_behavior(greeting="second")
    with SteadyLoad(tiny_app.url(), rate=100, max_seconds=60) as load:
        load.wait_for(50)
        outcome = hw.deploy(version="v2")
        load.wait_for(load.result.sent + 50)
    assert load.result.failed == 0, load.result.summary()
    assert load.result.bodies["v2"] > 0
    assert outcome.record.outcome == "live"
    assert httpx.get(tiny_app.url()).json()["release"] == "v2"
    log = [json.loads(line) for line in hw.proxy.access_log.read_text().splitlines()
           if f'"app":"{tiny_app.name}"' in line]
    releases = {e["release"] for e in log}
    assert {"v1", "v2"} <= releases


def test_abort_by_hand_and_sticky_cookie(tiny_app):
    canary = CANARY.replace("duration: 3s}, {weight: 60, duration: 3s}", "duration: 60s}").replace(
        "steps:", "sticky: cookie\n    steps:")
    tiny_app.edit_config("  drain_timeout: 5s\n", "  drain_timeout: 5s\n" + canary)
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    tiny_app.set_behavior(greeting="second")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            tiny_app.headway().deploy(version="v2")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    deploying = threading.Thread(target=run)
    with SteadyLoad(tiny_app.url(), rate=50, max_seconds=90):
        deploying.start()
        deadline = time.monotonic() + 60
        first = httpx.get(tiny_app.url())
        while "set-cookie" not in first.headers and time.monotonic() < deadline:
            time.sleep(0.1)  # the deploy builds and health-checks before the proxy splits traffic
            first = httpx.get(tiny_app.url())
        # sticky: a client with a cookie stays on one side of the split
        cookie = first.headers["set-cookie"].split(";")[0]
        sides = {httpx.get(tiny_app.url(), headers={"Cookie": cookie}).json()["release"] for _ in range(20)}
        assert len(sides) == 1
        result = tiny_app.cli("abort", "-e", "production")
        assert result.returncode == 0, result.stderr
        deploying.join(60)
    assert errors and isinstance(errors[0], CanaryFailed) and "aborted by" in str(errors[0])
    assert httpx.get(tiny_app.url()).json()["release"] == "v1"
