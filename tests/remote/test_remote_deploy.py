"""From a laptop-like checkout to a server over SSH: the example shop deployed, redeployed and rolled back there
under a strict client, with the truth (releases, lock, journal) kept on the server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from bench.loadgen import SteadyLoad

from tests.remote.conftest import git, shop_checkout

pytestmark = [pytest.mark.docker, pytest.mark.remote]


@pytest.fixture
def checkout(tmp_path: Path, docker_server):  # type: ignore[no-untyped-def]
    """examples/shop as a developer's clone: its own name, production on the server, committed."""
    docker_server.load_images("postgres:15", "redis:7")
    root, name = shop_checkout(tmp_path, "rshop", f"    hosts: ['{docker_server.address}']\n")
    boot = docker_server.cli("--host", str(docker_server.address), "proxy", "boot", cwd=root)
    assert boot.returncode == 0, boot.stderr
    yield root, name
    docker_server.cli("remove", "-e", "production", "--yes", "--volumes", cwd=root)


def test_deploy_redeploy_and_rollback_on_the_server(docker_server, checkout) -> None:  # type: ignore[no-untyped-def]
    root, name = checkout
    host = {"Host": f"{name}.localhost"}
    url = docker_server.url(80, "/")
    first = docker_server.cli("deploy", "-e", "production", cwd=root)
    assert first.returncode == 0, first.stderr
    assert "sending" in first.stderr and "build image" in first.stderr
    v1 = httpx.get(url, headers=host, timeout=10).json()["release"]
    assert len(v1) == 12  # the commit built
    # a change, committed: the redeploy and the rollback happen under a strict client's load
    app_main = root / "app" / "main.py"
    app_main.write_text(app_main.read_text() + "\n# second release\n")
    (root / "app" / "uncommitted.txt").write_text("never reaches the server\n")
    git(root, "commit", "-qam", "second")
    with SteadyLoad(url, rate=80, max_seconds=400, headers=host, strict=True) as load:
        load.wait_for(50)
        second = docker_server.cli("deploy", "-e", "production", cwd=root)
        assert second.returncode == 0, second.stderr
        load.wait_for(load.result.sent + 50)
        back = docker_server.cli("rollback", "-e", "production", cwd=root)
        assert back.returncode == 0, back.stderr
        load.wait_for(load.result.sent + 50)
    assert load.result.failed == 0, load.result.summary()
    assert len(load.result.bodies) == 2 and v1 in load.result.bodies
    assert httpx.get(url, headers=host, timeout=10).json()["release"] == v1
    # the truth is on the server: its history, read by a second checkout-less command, and nothing here
    releases = docker_server.cli("releases", "-e", "production", "--json", cwd=root)
    assert releases.returncode == 0, releases.stderr
    assert [r["action"] for r in json.loads(releases.stdout)][-3:] == ["deploy", "deploy", "rollback"]
    assert docker_server.sh(f"ls /var/lib/headway/apps/{name}/production/").strip()
    listing = docker_server.cli("exec", "-e", "production", "web", "--", "ls", "/app/app", cwd=root)
    assert listing.returncode == 0, listing.stderr
    assert "main.py" in listing.stdout and "uncommitted.txt" not in listing.stdout
    # nothing of the secrets stays on the server's disk (the bundle lived on a tmpfs and is gone)
    assert docker_server.sh("ls -A /dev/shm/headway-bundles 2>/dev/null | wc -l").strip() == "0"


def test_a_different_headway_on_the_server_and_no_headway_are_named(docker_server, checkout
                                                                     ) -> None:  # type: ignore[no-untyped-def]
    root, _ = checkout
    mismatch = docker_server.cli("remote-run", "--expect-version", "0.0.0-other", "--", "status", "-e",
                                 "production", cwd=root, env={"HEADWAY_ON_SERVER": "1"})
    assert mismatch.returncode == 2 and "server bootstrap" in mismatch.stderr
    hidden = docker_server.sh("mv /usr/local/bin/headway /usr/local/bin/headway.off && echo moved")
    assert "moved" in hidden
    try:
        missing = docker_server.cli("status", "-e", "production", cwd=root)
    finally:
        docker_server.sh("mv /usr/local/bin/headway.off /usr/local/bin/headway && echo back")
    assert missing.returncode != 0 and "not installed" in missing.stderr and "server bootstrap" in missing.stderr
    assert "Traceback" not in missing.stderr
