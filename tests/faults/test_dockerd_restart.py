"""The host reboots: after the Docker daemon restarts, the proxy and every live release serve again by themselves.

This test stops and restarts the dockerd of this machine (started by scripts/bootstrap.sh), so it runs last
(see tests/conftest.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from headway.engine import labels as L
from tests.faults.conftest import served_release, status

pytestmark = [pytest.mark.docker, pytest.mark.proxy, pytest.mark.faults, pytest.mark.restarts_dockerd]

PIDFILE = Path("/var/run/docker.pid")
LOG = Path("/var/log/headway-dockerd.log")


def _docker_up() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout:.0f}s")


def restart_dockerd() -> None:
    pid = int(PIDFILE.read_text().strip())
    os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True

    _wait(gone, 120, "dockerd did not stop")
    with open(LOG, "ab") as log:
        subprocess.Popen(["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    _wait(_docker_up, 120, "dockerd did not come back")


def _serves(app, release: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(served_release(app) == release)
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def test_proxy_and_live_release_come_back_after_dockerd_restart(fault_app, docker_engine, proxy):
    fault_app.cli("deploy", "-e", "production", "--version", "before-reboot", check=True)
    assert served_release(fault_app) == "before-reboot"
    retained = [c.name for c in docker_engine.containers(
        L.selector(app=fault_app.name, environment="production", kind="app"), include_stopped=True)
        if c.labels[L.RELEASE] != "before-reboot"]
    assert retained, "the test needs a retained (stopped) release"
    try:
        restart_dockerd()
    finally:
        if not _docker_up():  # leave the machine with a daemon, whatever happened
            subprocess.Popen(["dockerd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
            _wait(_docker_up, 120, "dockerd did not come back")
    # no headway command: the engine restarts the proxy and the live release, and the proxy routes to them
    _wait(lambda: _serves(fault_app, "before-reboot"), 90, "the live release did not serve again")
    report = status(fault_app)
    assert report["release"] == "before-reboot"
    assert report["interrupted"] is None
    for name in retained:
        c = docker_engine.get(name)
        assert c is not None and c.status != "running", f"retained {name} was started by the restart"


def test_a_dead_proxy_process_is_restarted(fault_app, docker_engine, proxy):
    container = proxy.proxy.container()
    assert container is not None
    container.reload()
    release = served_release(fault_app)
    os.kill(int(container.attrs["State"]["Pid"]), signal.SIGKILL)  # nginx's master, as the host sees it
    _wait(lambda: _serves(fault_app, release), 60, "the proxy did not come back after its process died")
