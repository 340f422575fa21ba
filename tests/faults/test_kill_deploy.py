"""SIGKILL at every step boundary of deploy, rollback and scale, under a strict client's load.

Each case: the strict client (HTTP/1.1 keep-alive, no retries, no check of the socket before reuse) sends
requests; headway is killed at one named point (HEADWAY_FAULT); `status` must name what the proxy really serves;
the next command must converge; not one request may fail; nothing may be left behind.
"""

from __future__ import annotations

import itertools

import pytest
from bench.loadgen import SteadyLoad

from tests.faults.conftest import assert_converged, served_release, status

pytestmark = [pytest.mark.docker, pytest.mark.proxy, pytest.mark.faults]

DEPLOY_POINTS = ["deploy:begin", "deploy:accessories", "deploy:built", "oneoff:started", "deploy:released",
                 "deploy:started", "deploy:gated", "proxy:routed", "deploy:switched", "deploy:recorded",
                 "retire:stopped"]
_n = itertools.count(1)


@pytest.mark.parametrize("point", DEPLOY_POINTS)
def test_deploy_killed(fault_app, docker_engine, point):
    n = next(_n)
    with SteadyLoad(fault_app.url(), rate=100, max_seconds=150, strict=True) as load:
        load.wait_for(30)
        killed = fault_app.cli("deploy", "-e", "production", "--version", f"k{n}", env={"HEADWAY_FAULT": point})
        assert killed.returncode == -9, f"not killed at {point}: {killed.returncode}\n{killed.stderr[-2000:]}"
        report = status(fault_app)
        served = served_release(fault_app)
        assert report["release"] == served, (point, report["release"], served)
        assert report["interrupted"] is not None, "status must say a command was interrupted"
        rerun = fault_app.cli("deploy", "-e", "production", "--version", f"r{n}")
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert served_release(fault_app) == f"r{n}"
        sent = load.result.sent
        load.wait_for(sent + 30)
    result = load.result
    assert result.failed == 0, (point, result.summary())
    assert result.sent > 100
    report = status(fault_app)
    assert report["interrupted"] is None and report["release"] == f"r{n}"
    assert_converged(fault_app, docker_engine)


ROLLBACK_POINTS = ["rollback:begin", "proxy:routed", "rollback:switched", "rollback:recorded", "retire:stopped"]


@pytest.mark.parametrize("point", ROLLBACK_POINTS)
def test_rollback_killed(fault_app, docker_engine, point):
    before = served_release(fault_app)
    with SteadyLoad(fault_app.url(), rate=100, max_seconds=120, strict=True) as load:
        load.wait_for(30)
        killed = fault_app.cli("rollback", "-e", "production", env={"HEADWAY_FAULT": point})
        assert killed.returncode == -9, f"not killed at {point}: {killed.returncode}\n{killed.stderr[-2000:]}"
        report = status(fault_app)
        assert report["release"] == served_release(fault_app)
        recovered = fault_app.cli("recover", "-e", "production")
        assert recovered.returncode == 0, recovered.stderr
        if served_release(fault_app) == before:  # the kill fell before the switch: roll back for real
            again = fault_app.cli("rollback", "-e", "production")
            assert again.returncode == 0, again.stderr[-3000:]
        assert served_release(fault_app) != before
        back = fault_app.cli("rollback", "-e", "production", before)
        assert back.returncode == 0, back.stderr[-3000:]
        load.wait_for(load.result.sent + 30)
    assert load.result.failed == 0, (point, load.result.summary())
    assert status(fault_app)["interrupted"] is None
    assert served_release(fault_app) == before
    assert_converged(fault_app, docker_engine)


SCALE_POINTS = ["scale:begin", "scale:started", "proxy:routed", "scale:switched"]


@pytest.mark.parametrize("point", SCALE_POINTS)
def test_scale_killed(fault_app, docker_engine, point):
    with SteadyLoad(fault_app.url(), rate=100, max_seconds=120, strict=True) as load:
        load.wait_for(30)
        killed = fault_app.cli("scale", "-e", "production", "web=3", env={"HEADWAY_FAULT": point})
        assert killed.returncode == -9, f"not killed at {point}: {killed.returncode}\n{killed.stderr[-2000:]}"
        again = fault_app.cli("scale", "-e", "production", "web=2")
        assert again.returncode == 0, again.stderr[-3000:]
        load.wait_for(load.result.sent + 30)
    assert load.result.failed == 0, (point, load.result.summary())
    report = status(fault_app)
    assert report["interrupted"] is None
    web = [c for c in report["containers"] if c["role"] == "web" and c["health"] == "live"
           and c["state"] == "running"]
    assert len(web) == 2, report["containers"]
    assert_converged(fault_app, docker_engine)
