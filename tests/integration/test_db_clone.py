"""`headway db clone production staging --anonymize anonymize.yml` against real PostgreSQL containers: staging gets
production's newest good backup with the rules applied before it is swapped in, production's database is never
touched (it is not even running during the clone), and production is never a target."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.integration.db_support import DbApp

from headway.data.anonymize import fake_value

pytestmark = [pytest.mark.docker]

RULES = """\
tables:
  users:
    email: fake_email
    name: fake_name
    password_hash: {constant: "!disabled"}
    plan: keep
"""
SCHEMA = """
CREATE TABLE users (id int PRIMARY KEY, email varchar(255) NOT NULL UNIQUE, name text, password_hash text NOT NULL,
                    plan text NOT NULL);
CREATE TABLE orders (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users (id), total numeric(10, 2));
INSERT INTO users SELECT i, 'person' || i || '@corp.example.com', CASE WHEN i % 10 = 0 THEN NULL ELSE 'Person ' || i
                         END, 'pbkdf2$' || md5(i::text), CASE WHEN i % 3 = 0 THEN 'pro' ELSE 'free' END
                  FROM generate_series(1, 120) i;
INSERT INTO orders SELECT i, 1 + i % 120, i * 1.5 FROM generate_series(1, 300) i;
"""


def cli(app: DbApp, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEADWAY_STATE_DIR": str(app.state_dir)}
    return subprocess.run([sys.executable, "-m", "headway", *args], cwd=app.root, env=env, text=True,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)


def databases(app: DbApp, environment: str) -> list[str]:
    return app.psql("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1", environment).split()


def wait_serving(app: DbApp, environment: str) -> None:
    svc = app.service(environment)
    container = svc.dbs.container(svc.dbs.spec("db"))
    assert container is not None
    deadline = time.monotonic() + 60
    while container.exec_run(["pg_isready", "-q", "-h", "127.0.0.1"]).exit_code != 0:
        assert time.monotonic() < deadline, "the database did not come back"
        time.sleep(0.2)  # polling readiness with a deadline


def test_clone_production_to_staging_anonymized(db_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app: DbApp = db_app("  db: {engine: postgres}")
    app.service("production").dbs.ensure()
    app.service("staging").dbs.ensure()
    app.psql(SCHEMA, "production")
    app.psql("CREATE TABLE staging_only (x int); INSERT INTO staging_only VALUES (7)", "staging")
    rules = tmp_path / "anonymize.yml"
    rules.write_text(RULES)
    original = [row.split("|") for row in app.psql("SELECT id, email, coalesce(name, '<null>'), plan FROM users "
                                                   "ORDER BY id", "production").splitlines()]
    backup = app.service("production").backup("db")
    before = app.pg_checksums("production")

    # refused before anything is read or written: production as the target, the same environment twice, bad rules
    for args, phrase in [(("staging", "production"), "refusing to write into production"),
                         (("staging", "Production"), "refusing to write into Production"),
                         (("staging", "staging"), "both staging")]:
        result = cli(app, "db", "clone", *args, "--anonymize", str(rules), "--yes")
        assert result.returncode == 2, result.stderr
        assert phrase in result.stderr and "Traceback" not in result.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text("tables:\n  users:\n    email: fake_mail\n")
    result = cli(app, "db", "clone", "production", "staging", "--anonymize", str(broken), "--yes")
    assert result.returncode == 2 and f"{broken}:3: tables.users.email" in result.stderr, result.stderr
    assert "did you mean `fake_email`" in result.stderr
    unknown = tmp_path / "unknown.yml"
    unknown.write_text("tables:\n  users:\n    emial: fake_email\n")
    result = cli(app, "db", "clone", "production", "staging", "--anonymize", str(unknown))
    assert result.returncode == 10 and "not cloned" in result.stderr  # no terminal, no --yes: not confirmed
    # rules that do not fit the copy: found inside the restored copy, which is dropped; staging is as it was
    result = cli(app, "db", "clone", "production", "staging", "--anonymize", str(unknown), "--yes")
    assert result.returncode == 2, result.stderr
    assert f"{unknown}:3: tables.users.emial: no such column in users; did you mean `email`?" in result.stderr
    assert "staging is as it was" in result.stderr
    assert app.psql("SELECT x FROM staging_only", "staging").strip() == "7"
    assert not [d for d in databases(app, "staging") if "_restore_" in d]

    # the source database is not running: the clone reads production's backup storage only
    prod = app.service("production")
    prod_container = prod.dbs.container(prod.dbs.spec("db"))
    assert prod_container is not None
    prod_container.stop()
    started = time.monotonic()
    result = cli(app, "db", "clone", "production", "staging", "--anonymize", str(rules), "--yes")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    prod_container.reload()
    assert prod_container.status == "exited"  # never started, never connected to
    assert backup.id in result.stderr and "users" in result.stdout and "fake_email" in result.stdout
    assert re.search(r"users\s+120\s+email\s+fake_email\s+120", result.stdout), result.stdout

    staged = [row.split("|") for row in app.psql("SELECT id, email, coalesce(name, '<null>'), plan, password_hash "
                                                 "FROM users ORDER BY id", "staging").splitlines()]
    assert len(staged) == len(original) == 120
    emails = [row[1] for row in staged]
    assert len(set(emails)) == 120 and all(re.fullmatch(r"user_[0-9a-f]{20}@example\.invalid", e) for e in emails)
    for (uid, email, name, plan), (s_id, s_email, s_name, s_plan, s_hash) in zip(original, staged, strict=True):
        assert s_id == uid and s_plan == plan  # kept columns
        assert s_email == fake_value("fake_email", email)
        assert s_name == ("<null>" if name == "<null>" else fake_value("fake_name", name))
        assert s_hash == "!disabled"
    assert app.psql("SELECT count(*), sum(total) FROM orders", "staging").strip() == "300|67725.00"
    assert "corp.example.com" not in app.psql("SELECT string_agg(email, ',') FROM users", "staging")
    # staging's own data before the clone is kept beside it, and in a safety backup
    kept = [d for d in databases(app, "staging") if d.startswith(f"{app.name}_before_restore_")]
    assert len(kept) == 1
    assert any(r.reason.startswith("before restore of") for r in app.service("staging").backups("db"))

    prod_container.start()
    wait_serving(app, "production")
    assert app.pg_checksums("production") == before  # production's data unchanged
    print(f"\nclone of {len(original)} users: {took:.1f}s")


@pytest.mark.proxy
def test_clone_into_a_deployed_staging_holds_its_requests_for_the_swap_only(db_app, proxy,  # type: ignore[no-untyped-def]
                                                                        tmp_path: Path) -> None:
    import httpx

    app: DbApp = db_app("  db: {engine: postgres}", state_dir=proxy.state_dir)
    app.service("production").dbs.ensure()
    app.psql(SCHEMA, "production")
    app.service("production").backup("db")
    secrets = app.root / ".headway" / "secrets.staging"
    secrets.parent.mkdir(exist_ok=True)
    secrets.write_text("ANON_SALT=pepper-7f3a\n")
    secrets.chmod(0o600)
    app.headway("staging").deploy(version="v1")
    url = f"http://127.0.0.1:{app.ports['staging']}/"
    assert httpx.get(url, timeout=5).status_code == 200
    rules = tmp_path / "anonymize.yml"
    rules.write_text(RULES)

    missing = cli(app, "db", "clone", "production", "staging", "--anonymize", str(rules), "--yes",
                  "--salt-secret", "NOPE")
    assert missing.returncode == 2 and "no such secret" in missing.stderr, missing.stderr
    result = cli(app, "db", "clone", "production", "staging", "--anonymize", str(rules), "--yes", "--json",
                 "--salt-secret", "ANON_SALT")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    users = next(t for t in report["tables"] if t["table"] == "users")
    assert users["rows"] == 120
    assert {c["column"]: c["values"] for c in users["columns"]} == {"email": 120, "name": 108, "password_hash": 120}
    assert httpx.get(url, timeout=5).status_code == 200  # serving again, on the anonymized copy
    history = [r.action for r in app.headway("staging").state.history()]
    assert "stop" not in history and "start" not in history  # requests were held for the swap; nothing restarted
    assert report["held_s"] < 5
    assert "corp.example.com" not in app.psql("SELECT string_agg(email, ',') FROM users", "staging")
    # salted with the staging secret: the same value as the reference with that salt, not the unsalted one
    email = app.psql("SELECT email FROM users WHERE id = 1", "staging").strip()
    assert email == fake_value("fake_email", "person1@corp.example.com", "pepper-7f3a")
    assert email != fake_value("fake_email", "person1@corp.example.com")
