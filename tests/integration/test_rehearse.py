"""Migration rehearsals against real PostgreSQL containers: the new release's release command (psql running real
migrations) on a throwaway copy of production's newest backup, before production runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.conftest import FIXTURES
from tests.integration.db_support import DbApp

from headway.engine import labels as L
from headway.engine.docker import DockerEngine
from headway.errors import NotFound, ReleaseCommandFailed
from headway.release.rehearse import LABEL, REPORT, rehearse

pytestmark = [pytest.mark.docker, pytest.mark.proxy]

BIG = """
CREATE TABLE big (id serial PRIMARY KEY, n int NOT NULL, note text);
INSERT INTO big (n, note) SELECT g, 'row ' || g FROM generate_series(1, 200000) g;
CREATE TABLE small (id int PRIMARY KEY, name text);
INSERT INTO small VALUES (1, 'one'), (2, 'two');
"""


def migrations_app(make, proxy, rehearse_setting: str = "false") -> DbApp:  # type: ignore[no-untyped-def]
    """The migrations fixture app (psql applies migration.sql as the release command) with a PostgreSQL db."""
    app: DbApp = make("  db: {engine: postgres}", state_dir=proxy.state_dir)
    for item in (FIXTURES / "apps" / "migrations").iterdir():
        shutil.copy(item, app.root / item.name)
    (app.root / "headway.yml").write_text(
        f"app: {app.name}\n"
        "roles:\n"
        "  web: {command: perl serve.pl, port: 8000, replicas: 1, health: {path: /health, interval: 200ms}}\n"
        "release: sh migrate.sh\n"
        f"deploy: {{drain_timeout: 2s, health_deadline: 30s, rehearse: {rehearse_setting}}}\n"
        "databases:\n  db: {engine: postgres}\n"
        "environments:\n"
        f"  production: {{port: {app.ports['production']}}}\n"
        f"  staging: {{port: {app.ports['staging']}}}\n")
    return app


def migration(app: DbApp, sql: str) -> None:
    (app.root / "migration.sql").write_text(sql)


def served(app: DbApp) -> str:
    return str(httpx.get(f"http://127.0.0.1:{app.ports['production']}/", timeout=5).json()["release"])


def column_type(app: DbApp, table: str, column: str) -> str:
    return app.psql(f"SELECT data_type FROM information_schema.columns WHERE table_name = '{table}' "
                    f"AND column_name = '{column}'").strip()


def leftovers(engine: DockerEngine, app: DbApp) -> list[str]:
    """Everything with the rehearsal label of this app: containers, networks, volumes, throwaway image tags."""
    selector = [f"{L.APP}={app.name}", LABEL]
    out = [c.name for c in engine.containers(selector)]
    out += [n.name for n in engine.client.networks.list(filters={"label": selector})]
    out += [v.name for v in engine.volumes(selector)]
    out += [t for i in engine.images([f"{L.APP}={app.name}"]) for t in i["tags"] if ":rehearse-" in t]
    return out


def volumes(engine: DockerEngine) -> set[str]:
    return {v.name for v in engine.client.volumes.list()}


def cli(app: DbApp, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEADWAY_STATE_DIR": str(app.state_dir)}
    return subprocess.run([sys.executable, "-m", "headway", *args], cwd=app.root, env=env, text=True,
                          capture_output=True, timeout=timeout)


def test_heavy_migration_is_flagged_before_production_runs_it(db_app, proxy, docker_engine) -> None:  # type: ignore[no-untyped-def]
    app = migrations_app(db_app, proxy)
    migration(app, "SELECT 1;\n")
    app.headway().deploy(version="v1")
    app.psql(BIG)
    backup = app.service().backup()
    node_before = app.psql("SELECT relfilenode FROM pg_class WHERE relname = 'big'").strip()
    volumes_before = volumes(docker_engine)

    # a column type change: rewrites the whole table under an ACCESS EXCLUSIVE lock
    migration(app, "ALTER TABLE big ALTER COLUMN n TYPE bigint;\n")
    report = rehearse(app.headway(), version="v2")
    assert report.ok and report.rehearsed and report.exit_code == 0
    assert report.backup == {"db": backup.id}
    assert report.image == f"{app.name}:v2"
    (db,) = report.databases
    assert "-    n integer NOT NULL" in db.schema_diff and "+    n bigint NOT NULL" in db.schema_diff
    assert db.rewrites == ["public.big"]
    assert db.tables["public.big"].rows == 200000 and db.tables["public.small"].rows == 2
    lock = next(o for o in db.locks if o.table == "public.big" and o.mode == "AccessExclusiveLock")
    assert "ALTER TABLE big" in lock.statement and lock.rows == 200000
    kinds = {(f.kind, f.table) for f in report.findings}
    assert kinds == {("lock", "public.big"), ("rewrite", "public.big")}
    text = next(f.text for f in report.findings if f.kind == "lock")
    assert text.startswith("exclusive lock on public.big (200,000 rows, ") and " MB) for " in text
    assert "every read and write of it waits" in text
    assert report.release_twice_ok is True  # the same type again: nothing to do, no error

    # production did not run it: its column is still an int, its table's storage the same, v1 still serves
    assert column_type(app, "big", "n") == "integer"
    assert app.psql("SELECT relfilenode FROM pg_class WHERE relname = 'big'").strip() == node_before
    assert served(app) == "v1"
    assert [r.number for r in app.headway().state.history()] == [1]  # no deploy was made
    saved = json.loads((app.state_dir / "apps" / app.name / "production" / REPORT).read_text())
    assert saved["ok"] is True and saved["release_twice_ok"] is True and saved["version"] == "v2"
    assert saved["backup"] == {"db": backup.id} and saved["duration_s"] > 0 and saved["finished_at"]
    assert {f["kind"] for f in saved["findings"]} == {"lock", "rewrite"}
    assert leftovers(docker_engine, app) == []
    assert volumes(docker_engine) - volumes_before == set()  # the throwaway servers' anonymous volumes too

    # the command: warnings exit 0; --strict exits 1
    run = cli(app, "rehearse", "-e", "production", "--version", "v2")
    assert run.returncode == 0, run.stderr
    assert "exclusive lock on public.big (200,000 rows" in run.stderr and "rewrote public.big" in run.stderr
    assert "Traceback" not in run.stderr
    strict = cli(app, "rehearse", "-e", "production", "--version", "v2", "--strict", "--json")
    assert strict.returncode == 1, strict.stderr
    data = json.loads(strict.stdout)
    assert data["ok"] is True and {f["kind"] for f in data["findings"]} == {"lock", "rewrite"}

    # a harmless migration: an index built concurrently and a new table; nothing flagged
    migration(app, "CREATE INDEX CONCURRENTLY IF NOT EXISTS big_n ON big (n);\n"
                   "CREATE TABLE IF NOT EXISTS audit (id bigserial PRIMARY KEY, at timestamptz DEFAULT now());\n")
    harmless = rehearse(app.headway(), version="v3")
    assert harmless.ok and harmless.findings == [] and harmless.release_twice_ok is True
    assert harmless.databases[0].rewrites == []
    assert "CREATE INDEX big_n ON public.big USING btree (n);" in harmless.databases[0].schema_diff
    assert "CREATE TABLE public.audit" in harmless.databases[0].schema_diff

    # not safe to run twice: a plain CREATE TABLE
    migration(app, "CREATE TABLE audit (id bigserial PRIMARY KEY);\n")
    twice = rehearse(app.headway(), version="v4")
    assert twice.ok and twice.release_twice_ok is False
    assert 'relation "audit" already exists' in twice.second_output_tail
    saved = json.loads((app.state_dir / "apps" / app.name / "production" / REPORT).read_text())
    assert saved["ok"] is True and saved["release_twice_ok"] is False
    assert app.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'audit'").strip() == "0"
    assert served(app) == "v1" and leftovers(docker_engine, app) == []


def test_failed_rehearsal_stops_the_deploy(db_app, proxy, docker_engine) -> None:  # type: ignore[no-untyped-def]
    app = migrations_app(db_app, proxy, rehearse_setting="true")
    # the first deploy: no backup yet and nothing live, so it is rehearsed on an empty database
    migration(app, "CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, balance int);\n")
    app.headway().deploy(version="v1")
    app.psql("INSERT INTO accounts VALUES (1, 100)")
    app.service().backup()

    migration(app, "ALTER TABLE accounts ADD COLUMN owner text;\nALTER TABLE nosuchtable ADD COLUMN x int;\n")
    with pytest.raises(ReleaseCommandFailed) as failed:
        app.headway().deploy(version="v2")
    assert "rehearsal of v2 failed" in failed.value.message and "nothing was deployed" in failed.value.message
    assert 'relation "nosuchtable" does not exist' in (failed.value.details or "")
    assert "headway rehearse -e production" in (failed.value.fix or "")
    # nothing live changed: v1 serves, no deploy 2 was started, production's schema is as it was
    assert served(app) == "v1"
    assert [(r.number, r.outcome) for r in app.headway().state.history()] == [(1, "live")]
    assert column_type(app, "accounts", "owner") == ""
    assert app.psql("SELECT balance FROM accounts").strip() == "100"
    assert leftovers(docker_engine, app) == []
    saved = json.loads((app.state_dir / "apps" / app.name / "production" / REPORT).read_text())
    assert saved["ok"] is False and saved["release_twice_ok"] is None and saved["version"] == "v2"

    # the command says the same and exits non-zero, with the migration's output
    run = cli(app, "rehearse", "-e", "production", "--version", "v2")
    assert run.returncode == 5, run.stderr
    assert 'relation "nosuchtable" does not exist' in run.stderr and "Traceback" not in run.stderr

    # fixed: the deploy rehearses, then deploys
    migration(app, "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS owner text;\n")
    app.headway().deploy(version="v3")
    assert served(app) == "v3" and column_type(app, "accounts", "owner") == "text"


def test_no_backup_is_a_clear_error_and_allow_empty_works(db_app, proxy, docker_engine) -> None:  # type: ignore[no-untyped-def]
    app = migrations_app(db_app, proxy)
    migration(app, "CREATE TABLE items (id int PRIMARY KEY);\n")
    hw = app.headway()
    with pytest.raises(NotFound) as missing:
        rehearse(hw, version="v1")
    assert "no good backup of db in production" in missing.value.message
    assert "headway db backup -e production db" in (missing.value.fix or "")
    assert "--allow-empty" in (missing.value.fix or "")
    run = cli(app, "rehearse", "-e", "production", "--version", "v1")
    assert run.returncode == 9 and "headway db backup -e production" in run.stderr
    assert "--allow-empty" in run.stderr and "Traceback" not in run.stderr
    assert docker_engine.containers([f"{L.APP}={app.name}"]) == []  # nothing was started

    report = rehearse(app.headway(), version="v1", allow_empty=True)
    assert report.ok and report.backup == {"db": None} and report.release_twice_ok is False
    assert "CREATE TABLE public.items" in report.databases[0].schema_diff
    assert leftovers(docker_engine, app) == []
    # the live database was never created by the rehearsal
    assert docker_engine.get(f"{app.name}-production-db") is None


def test_nothing_to_rehearse_without_a_database(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    shutil.copytree(FIXTURES / "apps" / "tiny", root)
    env = {**os.environ, "HEADWAY_STATE_DIR": str(tmp_path / "state")}
    run = subprocess.run([sys.executable, "-m", "headway", "rehearse", "-e", "production"], cwd=root, env=env,
                         text=True, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "nothing to rehearse" in run.stderr and "no SQL database" in run.stderr


def interrupt_while_releasing(app: DbApp, engine: DockerEngine, sig: int) -> subprocess.CompletedProcess[str]:
    """`headway rehearse` sent `sig` once its release command's container runs; how it ended."""
    env = {**os.environ, "HEADWAY_STATE_DIR": str(app.state_dir)}
    argv = [sys.executable, "-m", "headway", "rehearse", "-e", "production", "--version", "v2"]
    proc = subprocess.Popen(argv, cwd=app.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        release = f"{app.name}-production-rehearse-"
        deadline = time.monotonic() + 180
        while not any((c.name or "").startswith(release) and (c.name or "").endswith("-1")
                      for c in engine.containers([LABEL], include_stopped=False)):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the release command never started"
            time.sleep(0.2)  # polling for the release command's container, with a deadline
        os.kill(proc.pid, sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(argv, proc.returncode, "", stderr)


def test_interrupted_rehearsal_cleans_up_and_recover_cleans_after_a_kill(db_app, proxy, docker_engine) -> None:  # type: ignore[no-untyped-def]
    app = migrations_app(db_app, proxy)
    migration(app, "SELECT 1;\n")
    app.headway().deploy(version="v1")
    app.psql(BIG)
    app.service().backup()
    migration(app, "SELECT 1;\n")  # changes nothing: two real dumps of the same schema compare equal
    quiet = rehearse(app.headway(), version="v2")
    assert quiet.ok and quiet.databases[0].schema_diff == "" and quiet.findings == []
    assert quiet.databases[0].rewrites == [] and quiet.release_twice_ok is True
    migration(app, "SELECT pg_sleep(60);\n")

    # Ctrl-C while the release command runs: everything is removed on the way out
    interrupted = interrupt_while_releasing(app, docker_engine, signal.SIGINT)
    assert interrupted.returncode != 0 and "aborted" in interrupted.stderr and "Traceback" not in interrupted.stderr
    assert leftovers(docker_engine, app) == []

    # SIGKILL: the debris stays until the next command that cleans up after rehearsals
    interrupt_while_releasing(app, docker_engine, signal.SIGKILL)
    left = leftovers(docker_engine, app)
    assert any(name.startswith(f"hw-{app.name}-production-rehearse-") for name in left)  # the network
    assert any(name.startswith(f"{app.name}-production-db-rehearse-") for name in left)  # the throwaway db
    notes = app.headway().recover()
    assert any("interrupted rehearsal" in n for n in notes)
    assert leftovers(docker_engine, app) == []
    assert served(app) == "v1"


def test_mariadb_schema_diff_and_duration(db_app, proxy, docker_engine) -> None:  # type: ignore[no-untyped-def]
    """MariaDB: the schema change, the duration and a rebuilt table (its InnoDB table id); no lock polling."""
    app = migrations_app(db_app, proxy)
    text = (app.root / "headway.yml").read_text()
    (app.root / "headway.yml").write_text(
        text.replace("roles:\n", "image: {dockerfile: Dockerfile.mariadb}\nroles:\n")
        .replace("release: sh migrate.sh", "release: sh migrate-mariadb.sh")
        .replace("db: {engine: postgres}", "maria: {engine: mariadb}"))
    svc = app.service()
    svc.dbs.ensure()
    app.mariadb("CREATE TABLE big (id int PRIMARY KEY AUTO_INCREMENT, n int NOT NULL); "
                "INSERT INTO big (n) SELECT seq FROM seq_1_to_20000; CREATE TABLE small (id int PRIMARY KEY)")
    backup = svc.backup()
    migration(app, "SELECT 1;\n")
    quiet = rehearse(app.headway(), version="m1")
    assert quiet.ok and quiet.databases[0].schema_diff == "" and quiet.databases[0].rewrites == []
    migration(app, "ALTER TABLE big MODIFY n bigint NOT NULL;\nCREATE TABLE IF NOT EXISTS notes (body text);\n")
    report = rehearse(app.headway(), version="m2")
    assert report.ok and report.duration_s > 0 and report.backup == {"maria": backup.id}
    (db,) = report.databases
    assert "-  `n` int(11) NOT NULL," in db.schema_diff and "+  `n` bigint(20) NOT NULL," in db.schema_diff
    assert "+CREATE TABLE `notes` (" in db.schema_diff
    assert db.rewrites == ["big"] and db.tables["big"].rows == 20000
    assert [(f.kind, f.table) for f in report.findings] == [("rewrite", "big")]
    assert report.release_twice_ok is True
    assert "int(11)" in app.mariadb("SHOW CREATE TABLE big")  # production untouched
    assert leftovers(docker_engine, app) == []
