"""The `databases:` and `storage:` sections, retention, cron schedules and count checks: plain data, no Docker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from headway.config.loader import parse_config
from headway.config.resolve import resolve
from headway.data.catalog import BackupRecord
from headway.data.cron import CronError, parse_cron
from headway.data.databases import resolve_databases, resolve_storage
from headway.data.retention import to_delete
from headway.data.schedule import render_cron
from headway.data.schema import Retention
from headway.data.verify import compare_counts
from headway.errors import ConfigError

AGE = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
BASE = f"""\
app: shop
roles: {{web: {{port: 8000}}}}
databases:
  db: {{engine: postgres, backup: {{schedule: '0 3 * * *', encrypt_to: [{AGE}]}}}}
  cache: {{engine: redis}}
environments:
  production: {{port: 8080}}
  staging:
    port: 8081
    databases: {{db: {{version: '16', backup: {{retention: {{last: 2}}}}}}}}
"""


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "headway.yml")
    return str(info.value)


def test_databases_resolve_per_environment(tmp_path: Path) -> None:
    config = parse_config(BASE, "headway.yml")
    prod = resolve_databases(resolve(config, "production", tmp_path))
    staging = resolve_databases(resolve(config, "staging", tmp_path))
    assert prod["db"].image == "postgres:15" and staging["db"].image == "postgres:16"
    assert prod["db"].url_env == "DATABASE_URL" and prod["cache"].url_env == "REDIS_URL"
    assert prod["db"].volume_name == "shop-production-db-data" != staging["db"].volume_name
    assert staging["db"].backup.retention.last == 2 and staging["db"].backup.encrypt_to == [AGE]
    assert prod["db"].backup.retention.last == 7
    storage = resolve_storage(resolve(config, "production", tmp_path), tmp_path / "state")
    assert storage.local_path == tmp_path / "state" / "backups" and storage.s3 is None


@pytest.mark.parametrize(("snippet", "expected"), [
    ("  db: {engine: oracle}", "databases.db.engine"),
    ("  db: {engine: postgres, backup: {schedule: 'every night'}}", "needs 5 fields"),
    ("  db: {engine: postgres, backup: {schedule: '61 * * * *'}}", "outside 0-59"),
    ("  db: {engine: postgres, backup: {encrypt_to: [age1short]}}", "not an age public key"),
    ("  db: {engine: postgres, backup: {storage: [s3]}}", "storage.s3` is not configured"),
    ("  db: {engine: postgres, backup: {retention: {last: 0}}}", "databases.db.backup.retention.last"),
    ("  db: {engine: postgres, backup: {before_deploy: sometimes}}", "before_deploy"),
    ("  db: {engine: postgres, passwd: x}", "databases.db.passwd"),
    ("  web: {engine: postgres}", "a role, an accessory or a database"),
    ("  a: {engine: postgres}\n  b: {engine: mariadb}", "both set DATABASE_URL"),
])
def test_bad_database_config(snippet: str, expected: str) -> None:
    text = f"app: shop\nroles: {{web: {{port: 8000}}}}\ndatabases:\n{snippet}\nenvironments: {{production: {{}}}}\n"
    assert expected in problems(text)


def test_environments_never_share_an_external_database() -> None:
    text = ("app: shop\nroles: {web: {port: 8000}}\n"
            "databases: {db: {engine: postgres, external_url: 'postgresql://u:p@db.example.com/shop'}}\n"
            "environments: {production: {}, staging: {}}\n")
    assert "would share the database db" in problems(text)


def test_external_url_gets_tls_by_default_and_secrets_from_the_file(tmp_path: Path) -> None:
    text = ("app: shop\nroles: {web: {port: 8000}}\n"
            "databases: {db: {engine: postgres}}\n"
            "environments:\n  production:\n    databases: {db: {external_url: '${PROD_DB}'}}\n  staging: {}\n")
    (tmp_path / ".headway").mkdir()
    secrets = tmp_path / ".headway" / "secrets.production"
    secrets.write_text("PROD_DB=postgresql://app:s3cret@db.example.com:5432/shop\n")
    secrets.chmod(0o600)
    target = resolve(parse_config(text, "headway.yml"), "production", tmp_path)
    spec = resolve_databases(target)["db"]
    ep = spec.dialect.parse_url(spec.external_url or "")
    assert ep.host == "db.example.com" and ep.tls and ep.password == "s3cret"
    assert "s3cret" not in repr(spec) and "s3cret" not in repr(ep)


def _rec(i: int, when: datetime) -> BackupRecord:
    return BackupRecord(id=f"db-{i}", app="a", environment="e", database="db", engine="postgres", image="p",
                        format="f", key=f"k{i}", status="good", started_at=when.isoformat())


def test_retention_keeps_last_and_gfs() -> None:
    now = datetime(2026, 6, 30, 12, tzinfo=UTC)
    good = [_rec(i, now - timedelta(hours=6 * i)) for i in range(200)]  # four a day for 50 days
    deleted = {r.id for r in to_delete(good, Retention(last=3, daily=7, weekly=4, monthly=2))}
    kept = [r for r in good if r.id not in deleted]
    assert {"db-0", "db-1", "db-2"} <= {r.id for r in kept}
    assert len({r.started.date() for r in kept}) >= 7
    assert len(kept) < 20 and len(deleted) > 150


def test_retention_never_deletes_the_newest_good_backup() -> None:
    now = datetime(2026, 6, 30, tzinfo=UTC)
    good = [_rec(i, now - timedelta(days=i)) for i in range(5)]
    assert "db-0" not in {r.id for r in to_delete(good, Retention(last=1, daily=0, weekly=0, monthly=0))}
    assert len(to_delete(good, Retention(last=1, daily=0, weekly=0, monthly=0))) == 4
    assert to_delete([], Retention()) == []


def test_cron() -> None:
    assert parse_cron("0 3 * * *").next_after(datetime(2026, 1, 1, 5)) == datetime(2026, 1, 2, 3)
    assert parse_cron("@hourly").next_after(datetime(2026, 1, 1, 5, 30)) == datetime(2026, 1, 1, 6)
    assert parse_cron("*/15 9-17 * * mon-fri").next_after(datetime(2026, 1, 3, 12)) == datetime(2026, 1, 5, 9)
    with pytest.raises(CronError):
        parse_cron("0 25 * * *")


def test_cron_file(tmp_path: Path) -> None:
    target = resolve(parse_config(BASE, "headway.yml"), "production", tmp_path)
    text = render_cron(target, tmp_path / "headway.yml", Path("/var/lib/headway"))
    lines = [ln for ln in text.splitlines() if " root " in ln]
    assert len(lines) == 1 and lines[0].startswith("0 3 * * * root cd ")
    assert "db run-scheduled -e production db" in lines[0] and "--state-dir /var/lib/headway" in lines[0]


def test_compare_counts() -> None:
    assert compare_counts({"t": 5}, {"t": 5}, {"t": 5}) == []
    assert compare_counts({"t": 5}, {"t": 7}, {"t": 6}) == []  # written to during the dump
    assert compare_counts({"t": 5}, {"t": 5}, {"t": 4}) == ["t: 4 rows, expected 5"]
    assert compare_counts({"t": 5, "u": 1}, {"t": 5, "u": 1}, {"t": 5}) == ["u: missing from the restore"]
