"""SIGKILL in the middle of a canary, under a strict client: the next command takes the canary out and removes it."""

from __future__ import annotations

import pytest
from bench.loadgen import SteadyLoad

from tests.faults.conftest import assert_converged, served_release, status

pytestmark = [pytest.mark.docker, pytest.mark.proxy, pytest.mark.faults]

CANARY = """\
  strategy: canary
  canary:
    steps: [{weight: 30, duration: 3s}, {weight: 60, duration: 3s}]
    analysis: {interval: 1s, min_requests: 10, success_rate: 99, p95: 500ms, max_wait: 20s}
"""


@pytest.mark.parametrize("nth", [1, 2])
def test_canary_killed_at_a_step(tiny_app, docker_engine, nth):
    tiny_app.edit_config("deploy:\n", "deploy:\n" + CANARY)
    tiny_app.cli("deploy", "-e", "production", "--version", "stable", check=True)
    with SteadyLoad(tiny_app.url(), rate=150, max_seconds=90, strict=True) as load:
        load.wait_for(50)
        killed = tiny_app.cli("deploy", "-e", "production", "--version", "canary",
                              env={"HEADWAY_FAULT": f"canary:step@{nth}"})
        assert killed.returncode == -9, killed.stderr[-2000:]
        report = status(tiny_app)
        assert report["interrupted"] is not None and report["release"] == "stable"
        assert any(c["health"] == "canary" for c in report["containers"]), report["containers"]
        recovered = tiny_app.cli("recover", "-e", "production")
        assert recovered.returncode == 0, recovered.stderr
        assert "every request back to the stable release" in recovered.stdout, recovered.stdout
        load.wait_for(load.result.sent + 50)
    assert load.result.failed == 0, load.result.summary()
    assert set(load.result.bodies) <= {"stable", "canary"}  # the canary's share answered while it ran
    assert served_release(tiny_app) == "stable"
    report = status(tiny_app)
    assert report["interrupted"] is None and report["canary"] is None
    assert_converged(tiny_app, docker_engine)
