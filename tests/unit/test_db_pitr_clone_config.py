"""`pitr:` in headway.yml, `--to` times and the environments a clone accepts: plain data, no Docker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from headway.config.loader import parse_config
from headway.config.resolve import resolve
from headway.data.clone import check_environments
from headway.data.databases import resolve_databases
from headway.data.recovery import parse_time
from headway.errors import ConfigError, ExitCode, HeadwayError


def config(databases: str, staging: str = "{}") -> str:
    return (f"app: shop\nroles: {{web: {{port: 8000}}}}\ndatabases:\n{databases}\n"
            f"environments:\n  production: {{}}\n  staging: {staging}\n")


def test_pitr_resolves_per_environment(tmp_path: Path) -> None:
    parsed = parse_config(config("  db: {engine: postgres, pitr: {enabled: true, archive_timeout: 30s}}",
                                 "{databases: {db: {pitr: {enabled: false}}}}"), "headway.yml")
    prod = resolve_databases(resolve(parsed, "production", tmp_path))["db"]
    staging = resolve_databases(resolve(parsed, "staging", tmp_path))["db"]
    assert prod.pitr_enabled and prod.pitr is not None and prod.pitr.archive_timeout == 30
    assert prod.pitr.retention_full == 2
    assert not staging.pitr_enabled
    plain = parse_config(config("  db: {engine: postgres}"), "headway.yml")
    assert not resolve_databases(resolve(plain, "production", tmp_path))["db"].pitr_enabled


@pytest.mark.parametrize(("databases", "staging", "expected"), [
    ("  db: {engine: mariadb, pitr: {enabled: true}}", "{}", "PostgreSQL only, not mariadb"),
    ("  db: {engine: redis, pitr: {}}", "{}", "PostgreSQL only, not redis"),
    ("  db: {engine: postgres, external_url: 'postgresql://u:p@h/d', pitr: {}}", "{}", "not an external_url"),
    ("  db: {engine: postgres, pitr: {archive_timeout: 10m}}", "{}", "between 1s and 300s"),
    ("  db: {engine: postgres, pitr: {archive_timeout: soon}}", "{}", "databases.db.pitr.archive_timeout"),
    ("  db: {engine: postgres, pitr: {enable: true}}", "{}", "databases.db.pitr.enable"),
    ("  db: {engine: mariadb}", "{databases: {db: {pitr: {enabled: true}}}}", "managed PostgreSQL databases only"),
])
def test_bad_pitr_config(databases: str, staging: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config(databases, staging), "headway.yml")
    assert expected in str(info.value)


def test_restore_times() -> None:
    assert parse_time("2026-11-21 14:05") == datetime(2026, 11, 21, 14, 5, tzinfo=UTC)
    assert parse_time("2026-11-21 14:05:30 UTC") == datetime(2026, 11, 21, 14, 5, 30, tzinfo=UTC)
    assert parse_time("2026-11-21T14:05:00Z") == datetime(2026, 11, 21, 14, 5, tzinfo=UTC)
    assert parse_time("2026-11-21 15:05:00+01:00") == datetime(2026, 11, 21, 15, 5,
                                                               tzinfo=timezone(timedelta(hours=1)))
    assert parse_time("2026-11-21 14:05:01.5+00") == datetime(2026, 11, 21, 14, 5, 1, 500000, tzinfo=UTC)
    with pytest.raises(HeadwayError) as info:
        parse_time("yesterday")
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(("source", "target", "expected"), [
    ("staging", "production", "refusing to write into production"),
    ("staging", "PROD", "refusing to write into PROD"),
    ("staging", "staging", "both staging"),
])
def test_clone_targets_refused(source: str, target: str, expected: str) -> None:
    with pytest.raises(HeadwayError) as info:
        check_environments(source, target)
    assert expected in info.value.message and info.value.exit_code == ExitCode.USAGE


def test_clone_into_another_environment() -> None:
    check_environments("production", "staging")
    check_environments("production", "review-42")
