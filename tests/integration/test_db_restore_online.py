"""`headway db restore` keeps the site up: requests are held (the proxy's maintenance page) for the swap alone, no
app container is stopped or restarted, and a maintenance window someone turned on is left as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from bench.loadgen import MAINTENANCE_503, SteadyLoad
from tests.integration.db_support import DbApp

from headway.engine import labels as L

pytestmark = [pytest.mark.docker, pytest.mark.proxy]

MARKER = b"Down for maintenance"
SEED = """
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5000) g;
"""


def cli(app: DbApp, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEADWAY_STATE_DIR": str(app.state_dir)}
    return subprocess.run([sys.executable, "-m", "headway", *args], cwd=app.root, env=env, text=True,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)


def started(docker_engine, app: DbApp) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {c.id: docker_engine.state(c).get("StartedAt", "")
            for c in docker_engine.containers(L.selector(app=app.name, kind="app"))}


def test_restore_holds_requests_for_the_swap_only(db_app, proxy, docker_engine) -> None:  # type: ignore[no-untyped-def]
    app: DbApp = db_app("  db: {engine: postgres}", state_dir=proxy.state_dir)
    app.headway().deploy(version="v1")
    app.psql(SEED)
    before = app.pg_checksums()
    backup = app.service().backup("db")
    app.psql("DELETE FROM items WHERE id > 10; CREATE TABLE later (x int)")
    running = started(docker_engine, app)
    url = f"http://127.0.0.1:{app.ports['production']}/"
    timeline: list[tuple[float, float, str, str | None]] = []
    with SteadyLoad(url, rate=200, max_seconds=120, strict=True, maintenance_marker=MARKER,
                    timeline=timeline) as load:
        load.wait_for(100)
        result = cli(app, "db", "restore", "-e", "production", backup.id, "--yes", "--json")
        assert result.returncode == 0, result.stderr[-3000:]
        load.wait_for(load.result.sent + 100)
    out = json.loads(result.stdout)
    assert load.result.failed == 0, load.result.summary()
    held = [(s, e) for s, e, status, _ in timeline if status == MAINTENANCE_503]
    assert held, "the swap held no request: the proxy's maintenance page was never seen"
    window = max(e for _, e in held) - min(s for s, _ in held)
    assert window < 1.0, f"requests were held {window:.2f}s"
    assert 0 < out["held_s"] < 1.0, out
    assert app.pg_checksums() == before
    assert started(docker_engine, app) == running  # no app container stopped, started or replaced
    assert httpx.get(url, timeout=5).status_code == 200
    report = json.loads(cli(app, "status", "-e", "production", "--json").stdout)
    assert report["maintenance"] is None and report["interrupted"] is None

    # a maintenance window someone turned on stays on through a restore (and no hold is made on top of it)
    assert cli(app, "maintenance", "on", "-e", "production", "--message", "planned work").returncode == 0
    again = cli(app, "db", "restore", "-e", "production", backup.id, "--yes")
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads(cli(app, "status", "-e", "production", "--json").stdout)
    assert report["maintenance"] is not None and report["maintenance"]["message"] == "planned work"
    assert cli(app, "maintenance", "off", "-e", "production").returncode == 0
    assert httpx.get(url, timeout=5).status_code == 200


def test_rollback_with_data_keeps_the_containers(db_app, proxy, docker_engine) -> None:  # type: ignore[no-untyped-def]
    app: DbApp = db_app("  db: {engine: postgres}", state_dir=proxy.state_dir)
    app.headway().deploy(version="v1")
    app.psql("CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 100)")
    app.headway().deploy(version="v2")
    app.psql("UPDATE accounts SET balance = 0")  # what v2 did to the data
    url = f"http://127.0.0.1:{app.ports['production']}/"
    with SteadyLoad(url, rate=200, max_seconds=120, strict=True, maintenance_marker=MARKER) as load:
        load.wait_for(100)
        result = cli(app, "rollback", "-e", "production", "--with-data", "--yes")
        assert result.returncode == 0, result.stderr[-3000:]
        load.wait_for(load.result.sent + 100)
    assert load.result.failed == 0, load.result.summary()
    assert app.psql("SELECT balance FROM accounts").strip() == "100"
    assert httpx.get(url, timeout=5).json()["release"] == "v1"
    history = [r.action for r in app.headway().state.history()]
    assert "stop" not in history and "start" not in history, history
