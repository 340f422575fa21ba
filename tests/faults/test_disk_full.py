"""The state directory's disk fills up during a deploy: a clear error, nothing changed, no corrupt journal."""

from __future__ import annotations

import errno
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.loadgen import SteadyLoad

from headway.engine.docker import DockerEngine
from headway.proxy.nginx import Proxy
from headway.state.journal import Journal
from tests.conftest import AppDir, RunningProxy, free_port, make_tiny_app
from tests.faults.conftest import assert_converged, served_release

pytestmark = [pytest.mark.docker, pytest.mark.proxy, pytest.mark.faults]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def app_on_small_disk(small_disk: Path, tmp_path: Path, docker_engine: DockerEngine) -> Iterator[AppDir]:
    px = Proxy(docker_engine, small_disk)
    ports = free_port(), free_port(), free_port()
    px.boot(http_port=ports[0], control_port=ports[1], https_port=ports[2],
            name=f"headway-proxy-small-{uuid.uuid4().hex[:6]}")
    gen = make_tiny_app(tmp_path / "src", RunningProxy(px, small_disk, *ports[:2], ports[2]), docker_engine)
    app = next(gen)
    try:
        yield app
    finally:
        for _ in gen:
            pass
        c = px.container()
        if c is not None:
            docker_engine.remove(c)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_state_disk_stops_the_deploy_cleanly(app_on_small_disk, small_disk, docker_engine):
    app = app_on_small_disk
    app.cli("deploy", "-e", "production", "--version", "v1", check=True)
    with SteadyLoad(app.url(), rate=100, max_seconds=120, strict=True) as load:
        load.wait_for(30)
        filler = fill(small_disk)
        failed = app.cli("deploy", "-e", "production", "--version", "v2")
        assert failed.returncode != 0
        assert "Traceback" not in failed.stderr, failed.stderr
        assert "full" in failed.stderr and "fix:" in failed.stderr, failed.stderr
        assert served_release(app) == "v1"
        journal = Journal(small_disk / "apps" / app.name / "production")
        journal.operations()  # readable: a torn line, if any, is skipped
        filler.unlink()
        shutil.rmtree(small_disk / "proxy" / "logs", ignore_errors=True)
        (small_disk / "proxy" / "logs").mkdir()
        again = app.cli("deploy", "-e", "production", "--version", "v3")
        assert again.returncode == 0, again.stderr
        assert served_release(app) == "v3"
        load.wait_for(load.result.sent + 30)
    assert load.result.failed == 0, load.result.summary()
    assert journal.open_operation() is None
    assert_converged(app, docker_engine)
