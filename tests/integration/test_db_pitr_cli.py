"""`pitr:` in headway.yml and `headway db restore --to TIME` against a real PostgreSQL 15 with pgBackRest: ensure()
runs the database with WAL archiving and a first base backup, does not undo a restore, and the CLI brings the data
back to a point in time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from tests.integration.db_support import DbApp

from headway.data.pitr import DATA_VOLUME, STANZA

pytestmark = [pytest.mark.docker]
PITR = "  db: {engine: postgres, pitr: {enabled: true, archive_timeout: 60s}}"


def cli(app: DbApp, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEADWAY_STATE_DIR": str(app.state_dir)}
    return subprocess.run([sys.executable, "-m", "headway", *args], cwd=app.root, env=env, text=True,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)


def test_pitr_is_postgres_only(db_app) -> None:  # type: ignore[no-untyped-def]
    app: DbApp = db_app("  db: {engine: mariadb, pitr: {enabled: true}}")
    result = cli(app, "db", "status", "-e", "production")
    assert result.returncode == 2 and "PostgreSQL only" in result.stderr, result.stderr
    app.write_config("  db: {engine: postgres, pitr: {archive_timeout: 10m}}")
    result = cli(app, "db", "status", "-e", "production")
    assert result.returncode == 2 and "archive_timeout is between 1s and 300s" in result.stderr, result.stderr


def test_restore_to_a_point_in_time_from_the_cli(db_app) -> None:  # type: ignore[no-untyped-def]
    app: DbApp = db_app(PITR)
    started = time.monotonic()
    svc = app.service()
    svc.dbs.ensure()
    spec = svc.dbs.spec("db")
    container = svc.dbs.container(spec)
    assert container is not None
    assert container.attrs["Config"]["Image"].startswith("headway-pitr/postgres:15-")
    assert container.labels[STANZA] == f"{app.name}-production-db"
    pitr = svc.dbs.pitr(spec)
    info = pitr.info(last_commit=False)
    assert [b.kind for b in info.backups] == ["full"] and info.earliest is not None
    assert app.psql("SHOW archive_mode").strip() == "on"
    ensured_in = time.monotonic() - started

    # rows must come after the earliest recoverable time (the first base backup, to the second)
    deadline = time.monotonic() + 10
    while datetime.fromtimestamp(float(app.psql("SELECT extract(epoch FROM clock_timestamp())")), UTC) \
            <= info.earliest:
        assert time.monotonic() < deadline
        time.sleep(0.1)  # polling the database's clock with a deadline
    app.psql("CREATE TABLE ticks (id serial PRIMARY KEY, phase int NOT NULL); "
             "INSERT INTO ticks (phase) SELECT 1 FROM generate_series(1, 100)")
    target = app.psql("SELECT clock_timestamp()").strip()  # e.g. 2026-11-22 00:45:01.123456+00
    app.psql("INSERT INTO ticks (phase) SELECT 2 FROM generate_series(1, 50)")
    app.psql("UPDATE ticks SET phase = 3 WHERE id <= 10")

    status = cli(app, "db", "status", "-e", "production")
    assert status.returncode == 0, status.stderr
    assert "point-in-time recovery of db:" in status.stdout and "1 base backup(s)" in status.stdout

    refused = cli(app, "db", "restore", "-e", "production", "--to", "2000-01-01 00:00", "--yes")
    assert refused.returncode == 2 and "before the earliest recoverable time" in refused.stderr, refused.stderr
    assert app.psql("SELECT count(*) FROM ticks").strip() == "150"

    restore_started = time.monotonic()
    result = cli(app, "db", "restore", "-e", "production", "--to", target, "--yes")
    restore_took = time.monotonic() - restore_started
    assert result.returncode == 0, result.stderr
    assert "recovered to" in result.stderr and "database down" in result.stderr

    assert app.psql("SELECT phase, count(*) FROM ticks GROUP BY phase ORDER BY phase").split() == ["1|100"]
    restored_volume = svc.dbs.container(spec).labels[DATA_VOLUME]  # type: ignore[union-attr]
    assert restored_volume.startswith(f"{app.name}-production-db-data-r")

    # ensure() (what every deploy runs) keeps the restored volume and the pgBackRest image
    app.service().dbs.ensure()
    again = app.service().dbs.container(spec)
    assert again is not None and again.labels[DATA_VOLUME] == restored_volume
    assert again.attrs["Config"]["Image"].startswith("headway-pitr/")
    assert app.psql("SELECT count(*) FROM ticks").strip() == "100"

    backup = cli(app, "db", "base-backup", "-e", "production", "--kind", "incr")
    assert backup.returncode == 0 and "(incr)" in backup.stderr, backup.stderr

    # pitr switched off again: the plain image, on the volume the database serves from now
    app.write_config("  db: {engine: postgres}")
    plain = app.service()
    plain.dbs.ensure()
    container = plain.dbs.container(spec)
    assert container is not None and container.attrs["Config"]["Image"] == "postgres:15"
    assert [m["Name"] for m in container.attrs["Mounts"] if m["Destination"] == spec.dialect.data_path] == \
        [restored_volume]
    assert app.psql("SELECT count(*) FROM ticks").strip() == "100"
    print(f"\nPITR: ensure (enable + first base backup) {ensured_in:.1f}s; `db restore --to` {restore_took:.1f}s, "
          f"{result.stderr.strip()}")


@pytest.mark.proxy
def test_restore_to_stops_and_starts_the_deployed_app(db_app, proxy) -> None:  # type: ignore[no-untyped-def]
    import httpx

    app: DbApp = db_app(PITR, state_dir=proxy.state_dir)
    prod = app.headway("production")
    prod.deploy(version="v1")  # creates the database through pgBackRest, with its first base backup
    url = f"http://127.0.0.1:{app.ports['production']}/"
    assert httpx.get(url, timeout=5).status_code == 200
    info = app.service().dbs.pitr(app.service().dbs.spec("db")).info(last_commit=False)
    assert len(info.backups) == 1 and info.earliest is not None
    deadline = time.monotonic() + 10
    while datetime.fromtimestamp(float(app.psql("SELECT extract(epoch FROM clock_timestamp())")), UTC) \
            <= info.earliest:
        assert time.monotonic() < deadline
        time.sleep(0.1)  # polling the database's clock with a deadline
    app.psql("CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 20)")
    target = app.psql("SELECT clock_timestamp()").strip()
    app.psql("DELETE FROM orders WHERE id > 5")  # the mistake to undo

    result = cli(app, "db", "restore", "-e", "production", "--to", target, "--yes")
    assert result.returncode == 0, result.stderr
    assert "app down" in result.stderr
    assert app.psql("SELECT count(*) FROM orders").strip() == "20"
    assert httpx.get(url, timeout=5).status_code == 200  # serving again
    actions = [r.action for r in app.headway("production").state.history()][-2:]
    assert actions == ["stop", "start"]
    assert app.headway("production").state.lock_holder() is None
