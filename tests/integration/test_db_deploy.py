"""Databases and deploys: apps get their URL, a backup before every release command, a failed migration says how
to restore, `rollback --with-data`, a new image version backed up first on the same volume, and staging and
production never sharing a database."""

from __future__ import annotations

import json

import httpx
import pytest
from tests.integration.db_support import DbApp

from headway.errors import ReleaseCommandFailed

pytestmark = [pytest.mark.docker, pytest.mark.proxy]


def behave(app: DbApp, **behavior: object) -> None:
    (app.root / "behavior.json").write_text(json.dumps({"show_env": ["DATABASE_URL"], **behavior}))


def test_deploys_with_a_database(db_app, proxy, docker_engine) -> None:  # type: ignore[no-untyped-def]
    app: DbApp = db_app("  db: {engine: postgres}", state_dir=proxy.state_dir)
    behave(app)
    prod, staging = app.headway("production"), app.headway("staging")
    prod.deploy(version="v1")
    staging.deploy(version="v1")

    url = httpx.get(f"http://127.0.0.1:{app.ports['production']}/", timeout=5).json()["env"]["DATABASE_URL"]
    staging_url = httpx.get(f"http://127.0.0.1:{app.ports['staging']}/", timeout=5).json()["env"]["DATABASE_URL"]
    assert url.startswith(f"postgresql://{app.name}:") and url.endswith(f"@db:5432/{app.name}")
    assert url != staging_url  # staging has its own credentials
    volumes = {v.name for v in docker_engine.volumes([f"dev.headway.app={app.name}"])}
    assert {f"{app.name}-production-db-data", f"{app.name}-staging-db-data"} <= volumes
    creds = app.state_dir / "apps" / app.name / "production" / "databases" / "db.credentials.json"
    assert oct(creds.stat().st_mode & 0o777) == "0o600"

    svc = prod.databases()
    first = svc.backups("db")
    assert [(r.reason, r.deploy, r.status) for r in first] == [("before deploy 1", 1, "good")]

    # a failing migration: the old release keeps serving, and the error says how to restore
    app.psql("CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 100)")
    behave(app, release_exit=1)
    with pytest.raises(ReleaseCommandFailed) as failed:
        app.headway("production").deploy(version="v2")
    pre = svc.backups("db")[-1]
    assert pre.reason == "before deploy 2" and pre.status == "good"
    assert f"headway db restore -e production {pre.id}" in (failed.value.fix or "")
    assert httpx.get(f"http://127.0.0.1:{app.ports['production']}/", timeout=5).json()["release"] == "v1"

    # a deploy whose migration changes data, rolled back with its data
    behave(app)
    outcome = app.headway("production").deploy(version="v3")
    app.psql("UPDATE accounts SET balance = 0; INSERT INTO accounts VALUES (2, 5)")  # what v3 did to the data
    rolled = app.headway("production").rollback(with_data=True, confirmed=True)
    assert rolled.record.target == 1
    assert app.psql("SELECT id, balance FROM accounts ORDER BY id").split() == ["1|100"]
    assert httpx.get(f"http://127.0.0.1:{app.ports['production']}/", timeout=5).json()["release"] == "v1"
    assert any(r.deploy == outcome.record.number for r in svc.backups("db"))


def test_new_image_version_is_backed_up_first_and_keeps_the_volume(db_app, docker_engine) -> None:  # type: ignore[no-untyped-def]
    docker_engine.client.images.get("postgres:15").tag("postgres", "15-hwtest")
    app: DbApp = db_app("  db: {engine: postgres}")
    svc = app.service()
    svc.dbs.ensure()
    app.psql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
    app.write_config("  db: {engine: postgres, version: 15-hwtest}")
    svc = app.service()
    svc.dbs.ensure(backup_first=lambda spec: svc.backup(spec.name, reason="before image change"))
    container = svc.dbs.container(svc.dbs.spec("db"))
    assert container is not None and container.attrs["Config"]["Image"] == "postgres:15-hwtest"
    assert app.psql("SELECT x FROM kept").strip() == "42"
    backups = svc.backups("db")
    assert [(r.reason, r.image, r.status) for r in backups] == [("before image change", "postgres:15", "good")]
