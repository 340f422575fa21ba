"""`headway db` as a user runs it: backups listed with failures shown plainly, bad input answered with a short
error and a fix, confirmation asked, and no password or key in output, logs, files or process listings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pyrage
import pytest
from tests.integration.db_support import DbApp

pytestmark = [pytest.mark.docker]


def cli(app: DbApp, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEADWAY_STATE_DIR": str(app.state_dir)}
    return subprocess.run([sys.executable, "-m", "headway", *args], cwd=app.root, env=env, text=True,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)


def assert_user_error(result: subprocess.CompletedProcess[str], code: int, *phrases: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "error:" in result.stderr and "fix:" in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr


def test_db_commands_and_secrets(db_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = pyrage.x25519.Identity.generate()
    identity = tmp_path / "backup.key"
    identity.write_text(f"# created: now\n{key}\n")
    app: DbApp = db_app("  db: {engine: postgres, backup: {schedule: '30 2 * * *', "
                        f"encrypt_to: [{key.to_public()}]}}}}")
    app.service().dbs.ensure()
    app.psql("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 50000)")
    creds = json.loads((app.state_dir / "apps" / app.name / "production" / "databases" /
                        "db.credentials.json").read_text())
    secrets = [creds["password"], creds["root_password"], str(key)]

    # watch the host's process list while a backup runs
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        backup = cli(app, "db", "backup", "-e", "production", "--json")
    finally:
        done.set()
        watcher.join()
    assert backup.returncode == 0, backup.stderr
    rec = json.loads(backup.stdout)
    assert rec["status"] == "good" and rec["encrypted_to"]

    listed = cli(app, "db", "backups", "-e", "production")
    assert rec["id"] in listed.stdout and "good" in listed.stdout
    verify = cli(app, "db", "verify", "-e", "production", rec["id"], "--identity", str(identity))
    assert verify.returncode == 0 and "passed" in verify.stderr, verify.stderr
    status = cli(app, "db", "status", "-e", "production")
    assert "postgres" in status.stdout and rec["id"] in status.stdout
    schedule = cli(app, "db", "schedule", "-e", "production", "--install", "--cron-dir", str(tmp_path / "cron.d"),
                   "--log-dir", str(tmp_path / "log"))
    assert schedule.returncode == 0, schedule.stderr
    cron = (tmp_path / "cron.d" / f"headway-{app.name}-production").read_text()
    assert cron.count(" root ") == 1 and "30 2 * * *" in cron

    # bad input: short errors with a fix, nothing touched
    assert_user_error(cli(app, "db", "restore", "-e", "production", "db-20000101T000000Z-0000", "--yes"), 9,
                      "no backup", "db backups")
    assert_user_error(cli(app, "db", "restore", "-e", "production", rec["id"]), 10, "not restored", "--yes")
    assert_user_error(cli(app, "db", "restore", "-e", "production", rec["id"], "--yes"), 2, "encrypted",
                      "--identity")
    wrong = tmp_path / "wrong.key"
    wrong.write_text(f"{pyrage.x25519.Identity.generate()}\n")
    assert_user_error(cli(app, "db", "restore", "-e", "production", rec["id"], "--yes", "--identity", str(wrong)),
                      1, "wrong key")
    assert_user_error(cli(app, "db", "backup", "-e", "production", "nope"), 2, "no database 'nope'")
    assert app.psql("SELECT count(*) FROM t").strip() == "50000"

    restore = cli(app, "db", "restore", "-e", "production", rec["id"], "--yes", "--identity", str(identity))
    assert restore.returncode == 0, restore.stderr

    container = app.service().dbs.container(app.service().dbs.spec("db"))
    assert container is not None
    everything = "".join(seen) + backup.stdout + backup.stderr + listed.stdout + verify.stderr + status.stdout + \
        restore.stderr + cron + container.logs().decode(errors="replace") + \
        (app.state_dir / "apps" / app.name / "production" / "backups.jsonl").read_text()
    assert len(seen) > 1
    for secret in secrets:
        assert secret not in everything


def test_unreachable_storage_is_a_plain_failure(db_app) -> None:  # type: ignore[no-untyped-def]
    app: DbApp = db_app("  db: {engine: postgres, backup: {storage: [local, s3]}}",
                        "storage: {s3: {bucket: nowhere, endpoint: 'http://127.0.0.1:9', access_key: a, "
                        "secret_key: b}}")
    app.service().dbs.ensure()
    assert_user_error(cli(app, "db", "backup", "-e", "production"), 1, "unreachable", "storage.s3.endpoint")
    listed = cli(app, "db", "backups", "-e", "production")
    assert "FAILED" in listed.stdout and "unreachable" in listed.stdout
    assert not [p for p in app.state_dir.rglob("*") if p.is_file() and ".zst" in p.name]
    status = cli(app, "db", "status", "-e", "production")
    assert "none" in status.stdout and "FAILED" in status.stdout
