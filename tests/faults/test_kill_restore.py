"""SIGKILL at every step boundary of `headway db restore`, under a strict client's load.

Each case: the live data is changed away from the backup; the strict client sends requests; `headway db restore` is
killed at one named point (HEADWAY_FAULT); `status` must say a restore was interrupted and name what the proxy
serves; the next command must finish or undo it — the live database then holds either the data it had or the
restored data, each in full — and let held requests through; a rerun converges on the restored data; no request
fails (the maintenance page of the swap's hold is the one expected answer); nothing is left behind.
"""

from __future__ import annotations

import itertools
import json
import shutil
import uuid
from collections.abc import Iterator

import httpx
import pytest
from bench.loadgen import SteadyLoad

from headway.engine import labels as L
from headway.engine.docker import DockerEngine
from headway.state.journal import Journal
from headway.state.store import AppState
from tests.conftest import FIXTURES, RunningProxy, _cleanup_app, free_port
from tests.integration.db_support import DbApp

pytestmark = [pytest.mark.docker, pytest.mark.proxy, pytest.mark.faults]

MARKER = b"Down for maintenance"  # the maintenance page's heading: the hold's expected 503
POINTS = ["restore:begin", "restore:created", "restore:restored", "restore:safety", "restore:held",
          "restore:swapped", "restore:released"]
SWAPPED = {"restore:swapped", "restore:released"}  # killed after the renames: the restored data is live
SEED = """
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10, 2));
INSERT INTO items SELECT g, 'item ' || g, g * 0.5 FROM generate_series(1, 2000) g;
CREATE TABLE marker (v text);
INSERT INTO marker VALUES ('backup');
"""
_n = itertools.count(1)


@pytest.fixture(scope="module")
def pg_app(tmp_path_factory: pytest.TempPathFactory, proxy: RunningProxy,
           docker_engine: DockerEngine) -> Iterator[tuple[DbApp, str, dict[str, str]]]:
    """The tiny app with a PostgreSQL database, deployed once, and one backup of its seeded data."""
    name = f"r{uuid.uuid4().hex[:7]}"
    root = tmp_path_factory.mktemp("kill-restore") / name
    shutil.copytree(FIXTURES / "apps" / "tiny", root)
    app = DbApp(root, name, proxy.state_dir, {"production": free_port(), "staging": free_port()})
    app.write_config("  db: {engine: postgres}")
    try:
        app.headway().deploy(version="v1")
        app.psql(SEED)
        seeded = app.pg_checksums()  # what every restore of the backup must bring back
        backup = app.service().backup("db")
        yield app, backup.id, seeded
    finally:
        _cleanup_app(docker_engine, name)
        if proxy.proxy.routes.get(name, "production") is not None:
            proxy.proxy.drop_route(name, "production")
        shutil.rmtree(proxy.state_dir / "apps" / name, ignore_errors=True)


def cli(app: DbApp, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    full = {**os.environ, "HEADWAY_STATE_DIR": str(app.state_dir), **(env or {})}
    return subprocess.run([sys.executable, "-m", "headway", *args], cwd=app.root, env=full, text=True,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)


def databases(app: DbApp) -> list[str]:
    return app.psql("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1").split()


def assert_clean(app: DbApp, engine: DockerEngine) -> None:
    state = AppState(app.state_dir, app.name, "production")
    assert Journal(state.dir).open_operation() is None
    assert state.lock_holder() is None
    assert not engine.containers(L.selector(app=app.name, kind="oneoff")), "leftover one-off container"
    names = databases(app)
    assert not [n for n in names if "_restore_" in n and "_before_restore_" not in n], names
    assert len([n for n in names if "_before_restore_" in n]) <= 1, names
    report = json.loads(cli(app, "status", "-e", "production", "--json").stdout)
    assert report["maintenance"] is None and report["interrupted"] is None
    running = [c for c in report["containers"] if c["role"] == "web" and c["state"] == "running"]
    assert running, report["containers"]


@pytest.mark.parametrize("point", POINTS)
def test_restore_killed(pg_app, docker_engine, point: str) -> None:  # type: ignore[no-untyped-def]
    app, backup, seeded = pg_app
    n = next(_n)
    app.psql(f"UPDATE marker SET v = 'live {n}'; DELETE FROM items WHERE id > {1000 + n}")
    live = app.pg_checksums()
    containers = {c.id for c in docker_engine.containers(L.selector(app=app.name, kind="app"))}
    with SteadyLoad(app_url(app), rate=100, max_seconds=150, strict=True, maintenance_marker=MARKER) as load:
        load.wait_for(30)
        killed = cli(app, "db", "restore", "-e", "production", backup, "--yes", env={"HEADWAY_FAULT": point})
        assert killed.returncode == -9, f"not killed at {point}: {killed.returncode}\n{killed.stderr[-2000:]}"
        report = json.loads(cli(app, "status", "-e", "production", "--json").stdout)
        assert report["interrupted"] is not None and report["interrupted"]["operation"] == "restore", report
        assert report["release"] == "v1"
        recovered = cli(app, "recover", "-e", "production")
        assert recovered.returncode == 0, recovered.stderr[-3000:]
        assert "interrupted restore" in recovered.stdout, recovered.stdout
        data = app.pg_checksums()  # the old data or the restored data, in full
        assert data == (seeded if point in SWAPPED else live), point
        assert httpx.get(app_url(app), timeout=5).status_code == 200  # the hold was released
        rerun = cli(app, "db", "restore", "-e", "production", backup, "--yes")
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert app.psql("SELECT v FROM marker").strip() == "backup"
        assert app.pg_checksums() == seeded
        load.wait_for(load.result.sent + 30)
    result = load.result
    assert result.failed == 0, (point, result.summary())
    assert result.sent > 100
    assert {c.id for c in docker_engine.containers(L.selector(app=app.name, kind="app"))} == containers
    assert_clean(app, docker_engine)


def app_url(app: DbApp) -> str:
    return f"http://127.0.0.1:{app.ports['production']}/"
