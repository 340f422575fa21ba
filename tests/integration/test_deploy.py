"""Deploy, rollback and scale against the real Docker Engine and headway's real nginx."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from bench.loadgen import SteadyLoad

from headway.engine import labels as L
from headway.errors import HealthCheckFailed, LockHeld, ReleaseCommandFailed

pytestmark = [pytest.mark.docker, pytest.mark.proxy]


def release_served(app, environment="production") -> str:
    return httpx.get(app.url(environment), timeout=5).json()["release"]


def live_containers(app, hw):
    return [c for c in hw.deployer.containers(include_stopped=False)]


def test_deploy_serves_new_release_and_records_it(tiny_app):
    hw = tiny_app.headway()
    outcome = hw.deploy(version="v1")
    assert outcome.record.outcome == "live"
    assert release_served(tiny_app) == "v1"
    # every container carries headway's labels
    running = live_containers(tiny_app, hw)
    assert {c.labels[L.ROLE] for c in running} == {"web", "worker"}
    assert len([c for c in running if c.labels[L.ROLE] == "web"]) == 2
    for c in running:
        assert c.labels[L.APP] == tiny_app.name
        assert c.labels[L.ENVIRONMENT] == "production"
        assert c.labels[L.RELEASE] == "v1"
        assert c.labels[L.COLOR] in ("blue", "green")
    # headers the proxy must forward
    headers = httpx.get(tiny_app.url(path="/headers"), headers={"X-Request-ID": "abc-123"}).json()
    assert headers["x-request-id"] == "abc-123"
    assert headers["x-forwarded-for"] and headers["x-real-ip"] and headers["x-forwarded-proto"] == "http"
    # history is on the host, readable by a second operator
    second = tiny_app.headway()
    assert [(r.number, r.version, r.outcome) for r in second.state.history()] == [(1, "v1", "live")]


def test_redeploy_under_load_fails_no_request(tiny_app):
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    tiny_app.set_behavior(greeting="second")
    with SteadyLoad(tiny_app.url(), rate=150, max_seconds=120) as load:
        load.wait_for(100)
        hw.deploy(version="v2")
        load.wait_for(load.result.sent + 100)
    result = load.result
    assert result.failed == 0, result.summary()
    assert result.bodies["v1"] > 0 and result.bodies["v2"] > 0
    assert release_served(tiny_app) == "v2"
    old = hw.deployer.containers(deploy=1)
    assert old and all(not hw.engine.state(c)["Running"] for c in old)  # retained, stopped


def test_failing_health_check_keeps_old_release(tiny_app):
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    tiny_app.set_behavior(healthy=False)
    tiny_app.edit_config("health_deadline: 20s", "health_deadline: 3s")
    hw = tiny_app.headway()
    with pytest.raises(HealthCheckFailed) as info:
        hw.deploy(version="bad")
    assert "503" in str(info.value) and "fix" in str(info.value)
    assert release_served(tiny_app) == "v1"
    assert hw.deployer.containers(deploy=2) == []  # the failed release's containers are gone
    assert hw.state.current().live == 1
    assert hw.state.history()[-1].outcome == "failed"


def test_failing_release_command_changes_nothing(tiny_app):
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    before = {c.id for c in hw.deployer.containers(include_stopped=False)}
    tiny_app.set_behavior(release_exit=3)
    with pytest.raises(ReleaseCommandFailed) as info:
        hw.deploy(version="v2")
    assert "migration 002 failed" in (info.value.details or "")
    assert {c.id for c in hw.deployer.containers(include_stopped=False)} == before
    assert release_served(tiny_app) == "v1"


def test_rollback_to_previous_and_named_release(tiny_app):
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    tiny_app.set_behavior(greeting="two")
    hw.deploy(version="v2")
    tiny_app.set_behavior(greeting="three")
    hw.deploy(version="v3")
    outcome = hw.rollback()
    assert outcome.record.target == 2 and release_served(tiny_app) == "v2"
    hw.rollback("v1")
    assert release_served(tiny_app) == "v1"
    actions = [(r.action, r.version) for r in hw.state.history()]
    assert actions[-2:] == [("rollback", "v2"), ("rollback", "v1")]


def test_rollback_under_load_with_warm_standby(tiny_app):
    tiny_app.edit_config("drain_timeout: 5s", "drain_timeout: 5s\n  warm_standby: true")
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    tiny_app.set_behavior(greeting="two")
    hw.deploy(version="v2")
    standby = hw.deployer.containers(deploy=1, role="web", include_stopped=False)
    assert len(standby) == 2, "the previous release's web containers stay running as a warm standby"
    with SteadyLoad(tiny_app.url(), rate=150, max_seconds=60) as load:
        load.wait_for(100)
        outcome = hw.rollback()
        load.wait_for(load.result.sent + 100)
    assert load.result.failed == 0, load.result.summary()
    assert release_served(tiny_app) == "v1"
    assert outcome.record.duration_s < 5


def test_lock_contention_fails_fast_and_names_holder(tiny_app):
    hw = tiny_app.headway()
    other = tiny_app.headway()
    with hw.state.lock("deploy held-by-test"):
        with pytest.raises(LockHeld) as info:
            other.deploy(version="v1")
        assert "held-by-test" in str(info.value) and "--wait" in str(info.value)
        result = tiny_app.cli("deploy", "-e", "production", "--version", "v1")
        assert result.returncode == 3 and "locked by" in result.stderr
    held, released = threading.Event(), threading.Event()

    def hold_then_release() -> None:
        with hw.state.lock("short hold"):
            held.set()
            released.wait(10)

    t = threading.Thread(target=hold_then_release)
    t.start()
    try:
        assert held.wait(10)
        threading.Timer(1.0, released.set).start()
        assert other.state.lock_holder() is not None
        other.deploy(version="v1", wait=30)  # queues behind the holder, then deploys
        assert released.is_set()
    finally:
        released.set()
        t.join()
    assert release_served(tiny_app) == "v1"


def test_staging_and_production_are_isolated(tiny_app):
    prod, staging = tiny_app.headway("production"), tiny_app.headway("staging")
    prod.deploy(version="p1")
    staging.deploy(version="s1")
    assert release_served(tiny_app, "production") == "p1"
    assert release_served(tiny_app, "staging") == "s1"
    nets = {c.attrs["HostConfig"]["NetworkMode"] for c in prod.deployer.containers()}
    assert nets == {f"hw-{tiny_app.name}-production"}
    assert {c.attrs["HostConfig"]["NetworkMode"] for c in staging.deployer.containers()} == \
        {f"hw-{tiny_app.name}-staging"}
    # breaking staging leaves production alone
    tiny_app.set_behavior(healthy=False)
    tiny_app.edit_config("health_deadline: 20s", "health_deadline: 2s")
    with pytest.raises(HealthCheckFailed):
        tiny_app.headway("staging").deploy(version="s2")
    prod_ids = {c.id for c in prod.deployer.containers(include_stopped=False)}
    staging.deployer.remove(confirmed=True)
    assert release_served(tiny_app, "production") == "p1"
    assert {c.id for c in prod.deployer.containers(include_stopped=False)} == prod_ids
    assert staging.deployer.containers() == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(tiny_app.url("staging"), timeout=2)


def test_scale_up_and_down_under_load(tiny_app):
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    with SteadyLoad(tiny_app.url(), rate=150, max_seconds=90) as load:
        load.wait_for(100)
        assert hw.scale({"web": 4, "worker": 2}) == {"web": 4, "worker": 2}
        assert len(hw.deployer.containers(role="web", include_stopped=False)) == 4
        hw.scale({"web": 1})
        load.wait_for(load.result.sent + 100)
    assert load.result.failed == 0, load.result.summary()
    assert len(hw.deployer.containers(role="web", include_stopped=False)) == 1
    assert len(hw.deployer.containers(role="worker", include_stopped=False)) == 2
    route = hw.proxy.routes.get(tiny_app.name, "production")
    assert route is not None and len(route.upstreams) == 1


def test_retention_keeps_last_releases(tiny_app):
    tiny_app.edit_config("drain_timeout: 5s", "drain_timeout: 5s\n  retain: 2")
    hw = tiny_app.headway()
    for n in range(1, 5):
        tiny_app.set_behavior(greeting=f"n{n}")
        hw.deploy(version=f"v{n}")
    assert hw.deployer.present_deploys() == {3, 4}


def test_stop_and_start(tiny_app):
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    hw.deployer.stop()
    r = httpx.get(tiny_app.url(), timeout=5)
    assert r.status_code == 503 and "stopped" in r.text
    assert hw.deployer.containers(include_stopped=False) == []
    hw.deployer.start()
    assert release_served(tiny_app) == "v1"


def test_status_logs_exec_via_cli(tiny_app):
    tiny_app.cli("deploy", "-e", "production", "--version", "v1", check=True)
    status = json.loads(tiny_app.cli("status", "-e", "production", "--json", check=True).stdout)
    assert status["release"] == "v1" and status["urls"]
    assert sum(1 for c in status["containers"] if c["health"] == "live") == 3
    releases = json.loads(tiny_app.cli("releases", "-e", "production", "--json", check=True).stdout)
    assert releases[0]["version"] == "v1" and releases[0]["by"]
    out = tiny_app.cli("exec", "-e", "production", "web", "--", "sh", "-c", "echo rel=$HEADWAY_RELEASE; exit 4")
    assert out.returncode == 4 and "rel=v1" in out.stdout
    logs = tiny_app.cli("logs", "-e", "production", "web", "--tail", "5")
    assert logs.returncode == 0


def test_invalid_proxy_config_never_goes_live(tiny_app):
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    from headway.errors import ProxyError
    from headway.proxy.routes import Route

    generation = hw.proxy.status().generation
    from headway.proxy.routes import RouteEdge

    bad = Route(app="broken", environment="x", release="r", deploy=1, domains=["broken.test"],
                upstreams=["127.0.0.1:9"], edge=RouteEdge(client_max_body_size="ten megabytes"))
    with pytest.raises(ProxyError) as info:
        hw.proxy.set_route(bad)
    assert "does not validate" in str(info.value)
    # routing that is not data the proxy can use is refused too, before the proxy sees it
    with pytest.raises(ProxyError) as info:
        hw.proxy.set_route(bad.model_copy(update={"edge": RouteEdge(), "upstreams": ["not an address"]}))
    assert "not a valid ip:port" in str(info.value)
    assert "broken--x" not in (hw.proxy.served() or pytest.fail("proxy not answering")).routes
    live = hw.proxy.status().generation
    assert live is not None
    # what nginx serves is the tree `current` points at, and no tree it could load mentions the bad route
    assert (hw.proxy.dir / "current").resolve().name == live
    assert "broken.test" not in (hw.proxy.dir / "current" / "nginx.conf").read_text()
    assert all("broken.test" not in (tree / "nginx.conf").read_text()
               for tree in (hw.proxy.dir / "trees").iterdir() if (tree / "nginx.conf").exists())
    assert generation is not None
    assert hw.proxy.routes.get("broken", "x") is None
    assert release_served(tiny_app) == "v1"
