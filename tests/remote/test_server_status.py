"""`headway server status` against real servers: a bootstrapped one with a container running, and a fresh one."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from headway import __version__
from tests.conftest import free_port
from tests.remote.conftest import RemoteServer

pytestmark = [pytest.mark.docker, pytest.mark.remote]


@pytest.fixture
def web_container(docker_server: RemoteServer) -> Iterator[str]:
    """A container in the server's engine publishing its port 8080 (reached here through docker_server.url)."""
    name = f"status-web-{int(time.monotonic() * 1000) % 100000}"
    docker_server.sh(f"docker run -d --name {name} -p 8080:8000 python:3.11-slim python3 -m http.server 8000")
    try:
        yield name
    finally:
        docker_server.exec(f"docker rm -f {name}", check=False)


def _get(url: str, deadline: float) -> int:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return int(resp.status)
        except OSError as exc:
            last = exc
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer: {last}")


def test_status_of_a_bootstrapped_server(docker_server: RemoteServer, web_container: str) -> None:
    # the published port goes through the firewall and both engines to the container
    assert _get(docker_server.url(8080), time.monotonic() + 30) == 200

    result = docker_server.cli("server", "status", str(docker_server.address), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    inside = docker_server.sh("docker version --format '{{.Server.Version}}'").strip()
    assert report["docker"]["running"] is True
    assert report["docker"]["version"] == inside
    assert report["docker"]["containers_running"] >= 1
    assert [d["path"] for d in report["disks"]] == ["/", "/var/lib/docker"]
    assert all(d["total_bytes"] > d["free_bytes"] > 0 for d in report["disks"])
    assert report["memory"]["total_bytes"] >= report["memory"]["available_bytes"] > 0
    assert set(report["load"]) == {"1m", "5m", "15m", "cpus"}
    listening = {(p["port"], p["process"]) for p in report["listening"] if p["proto"] == "tcp"}
    assert (22, "sshd") in listening
    assert (8080, "docker-proxy") in listening
    assert isinstance(report["updates"]["pending"], int)
    assert 0 <= report["updates"]["security"] <= report["updates"]["pending"]
    assert report["headway"] == __version__
    assert report["os"].startswith("Debian GNU/Linux 12")

    text = docker_server.cli("server", "status", str(docker_server.address))
    assert text.returncode == 0, text.stderr
    assert f"headway:  {__version__}" in text.stdout
    assert f"{inside} running" in text.stdout
    assert "disk /var/lib/docker:" in text.stdout
    assert "sshd" in text.stdout and "docker-proxy" in text.stdout


def test_status_of_a_fresh_server(fresh_server: RemoteServer) -> None:
    result = fresh_server.cli("server", "status", str(fresh_server.address), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["docker"] == {"installed": False, "running": False, "version": None,
                                "error": report["docker"]["error"]}
    assert report["headway"] is None
    assert (22, "sshd") in {(p["port"], p["process"]) for p in report["listening"]}

    text = fresh_server.cli("server", "status", str(fresh_server.address))
    assert "docker:   not installed" in text.stdout
    assert "headway:  not installed" in text.stdout


def test_status_of_an_unreachable_server(fresh_server: RemoteServer) -> None:
    port = free_port()
    result = fresh_server.cli("server", "status", f"root@127.0.0.1:{port}")
    assert result.returncode == 1
    assert "cannot reach" in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr
