"""Rollback to the warm standby: switched before the library loads, under a strict client, and killed right after."""

from __future__ import annotations

import json
import time

import pytest
from bench.loadgen import SteadyLoad

from tests.faults.conftest import assert_converged, served_release, status

pytestmark = [pytest.mark.docker, pytest.mark.proxy, pytest.mark.faults]


@pytest.fixture
def warm_app(tiny_app):
    tiny_app.edit_config("deploy:\n", "deploy:\n  warm_standby: true\n")
    for v in ("v1", "v2"):
        tiny_app.cli("deploy", "-e", "production", "--version", v, check=True)
    return tiny_app


def test_rollback_to_the_warm_standby_fails_nothing_and_is_quick(warm_app, docker_engine):
    with SteadyLoad(warm_app.url(), rate=150, max_seconds=60, strict=True) as load:
        load.wait_for(50)
        t0 = time.monotonic()
        result = warm_app.cli("rollback", "-e", "production", "--json")
        took = time.monotonic() - t0
        assert result.returncode == 0, result.stderr
        assert served_release(warm_app) == "v1"
        back = warm_app.cli("rollback", "-e", "production")  # and back: v2 is the standby now
        assert back.returncode == 0, back.stderr
        load.wait_for(load.result.sent + 50)
    assert load.result.failed == 0, load.result.summary()
    record = json.loads(result.stdout)["release"]
    assert record["action"] == "rollback" and record["version"] == "v1"
    assert record["duration_s"] < 0.5, record  # the switch itself, measured by the quick path
    assert took < 10
    assert served_release(warm_app) == "v2"
    report = status(warm_app)
    assert report["release"] == "v2" and report["interrupted"] is None
    assert {c["health"] for c in report["containers"] if c["release"] == "v1" and c["role"] == "web"} == \
        {"standby"}
    assert_converged(warm_app, docker_engine)


def test_killed_right_after_the_quick_switch(warm_app, docker_engine):
    with SteadyLoad(warm_app.url(), rate=150, max_seconds=60, strict=True) as load:
        load.wait_for(50)
        killed = warm_app.cli("rollback", "-e", "production", env={"HEADWAY_FAULT": "quick:switched"})
        assert killed.returncode == -9, killed.stderr
        assert served_release(warm_app) == "v1"
        report = status(warm_app)
        assert report["release"] == "v1" and report["interrupted"] is not None
        assert "finish it" in report["interrupted"]["next"]
        recovered = warm_app.cli("recover", "-e", "production")
        assert recovered.returncode == 0 and "finished it" in recovered.stdout, recovered.stdout
        load.wait_for(load.result.sent + 50)
    assert load.result.failed == 0, load.result.summary()
    assert status(warm_app)["interrupted"] is None
    assert_converged(warm_app, docker_engine)
