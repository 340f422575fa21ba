"""Which backup `db restore` and `db clone` pick without an id (never a safety backup, named with its age, a warning
when the data was restored since), `db backup` of every database, databases in `headway status`, and `headway logs`
of a managed database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.integration.db_support import DbApp

pytestmark = [pytest.mark.docker]


def cli(app: DbApp, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEADWAY_STATE_DIR": str(app.state_dir), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "headway", *args], cwd=app.root, env=env, text=True,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)


def test_safety_backups_are_never_picked_by_default(db_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app: DbApp = db_app("  db: {engine: postgres}")
    svc = app.service()
    svc.dbs.ensure()
    app.psql("CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'n' || g "
             "FROM generate_series(1, 50) g")

    # only a safety backup: nothing is picked, the error names it and how to use it; nothing changes
    safety = svc.backup("db", reason="before deploy 3", deploy=3)
    refused = cli(app, "db", "restore", "-e", "production", "--yes")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "safety backups" in refused.stderr and safety.id in refused.stderr, refused.stderr
    assert f"headway db restore -e production {safety.id}" in refused.stderr
    assert len(svc.backups("db")) == 1

    manual = svc.backup("db")
    app.psql("DELETE FROM items WHERE id > 5")
    first = cli(app, "db", "restore", "-e", "production", "--yes")
    assert first.returncode == 0, first.stderr
    assert f"using backup {manual.id} of db (manual, taken " in first.stderr and " ago" in first.stderr
    assert "warning" not in first.stderr
    assert app.psql("SELECT count(*) FROM items").strip() == "50"
    # that restore took a safety backup, newer than the manual one: still the manual one is picked
    newest = svc.catalog.good("db")[0]
    assert newest.reason == f"before restore of {manual.id}"
    assert svc.get(None).id == manual.id
    second = cli(app, "db", "restore", "-e", "production", "--yes")
    assert second.returncode == 0, second.stderr
    assert f"using backup {manual.id}" in second.stderr
    # ... and it warns: the data was restored after that backup was taken
    assert "warning" in second.stderr and f"restored from {manual.id}" in second.stderr, second.stderr
    # a safety backup named by id is restored
    named = cli(app, "db", "restore", "-e", "production", newest.id, "--yes")
    assert named.returncode == 0, named.stderr
    assert f"using backup {newest.id}" in named.stderr

    # bad input: an unknown --into is refused before anything happens
    before = len(svc.backups("db"))
    bad = cli(app, "db", "restore", "-e", "production", "--into", "nope", "--yes")
    assert bad.returncode == 2 and "no database 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    assert len(svc.backups("db")) == before

    # a clone names the source's backup, its age, and warns that the source was restored since
    app.service("staging").dbs.ensure()
    rules = tmp_path / "anonymize.yml"
    rules.write_text("tables:\n  items:\n    name: fake_name\n")
    clone = cli(app, "db", "clone", "production", "staging", "--anonymize", str(rules), "--yes")
    assert clone.returncode == 0, clone.stderr
    assert f"using backup {manual.id}" in clone.stderr and "production" in clone.stderr
    assert "restored from" in clone.stderr


def test_backup_every_database_status_and_logs(db_app) -> None:  # type: ignore[no-untyped-def]
    app: DbApp = db_app("  db: {engine: postgres}\n  cache: {engine: redis}")
    svc = app.service()
    svc.dbs.ensure()
    app.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")

    result = cli(app, "db", "backup", "-e", "production", "--json")
    assert result.returncode == 0, result.stderr
    taken = json.loads(result.stdout)
    assert [r["database"] for r in taken] == ["db", "cache"] and all(r["status"] == "good" for r in taken)
    one = cli(app, "db", "backup", "-e", "production", "cache", "--json")
    assert one.returncode == 0 and json.loads(one.stdout)["database"] == "cache"

    report = json.loads(cli(app, "status", "-e", "production", "--json").stdout)
    rows = {d["name"]: d for d in report["databases"]}
    assert set(rows) == {"db", "cache"}
    assert rows["db"]["engine"] == "postgres" and rows["db"]["version"] == "15"
    assert rows["db"]["state"] == "running" and rows["cache"]["engine"] == "redis"
    assert rows["db"]["last_backup"]["id"] == taken[0]["id"] and rows["db"]["last_backup"]["age"].endswith("ago")
    assert rows["cache"]["last_backup"]["id"] == json.loads(one.stdout)["id"]
    text = cli(app, "status", "-e", "production")
    assert text.returncode == 0 and "postgres" in text.stdout and taken[0]["id"] in text.stdout, text.stdout

    logs = cli(app, "logs", "-e", "production", "db", "--tail", "20")
    assert logs.returncode == 0, logs.stderr
    assert f"{app.name}-production-db |" in logs.stdout and "ready to accept connections" in logs.stdout
    unknown = cli(app, "logs", "-e", "production", "nope")
    assert unknown.returncode == 2 and "choose one of" in unknown.stderr and "db" in unknown.stderr
