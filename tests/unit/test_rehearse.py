"""The rehearsal's analysis without Docker: lock spans, rewrites, findings, schema normalization and diff, and the
`deploy.rehearse` setting."""

from __future__ import annotations

import pytest

from headway.config.model import DeploySettings
from headway.config.rehearse import rehearse_mode, thresholds
from headway.release.rehearse import (
    LockObservation,
    LockSample,
    LockTracker,
    RehearsalReport,
    TableFact,
    analyse,
    normalize_schema,
    rewritten,
    schema_diff,
)

ALTER = "ALTER TABLE big ALTER COLUMN n TYPE bigint"


def test_lock_tracker_reports_the_longest_span_per_table_and_mode() -> None:
    t = LockTracker("db")
    big = LockSample(41, "public.big", "AccessExclusiveLock", ALTER)
    t.observe(0.0, [])
    t.observe(1.0, [big])
    t.observe(1.5, [big, LockSample(41, "public.small", "ShareLock", "CREATE INDEX s ON small (x)")])
    t.observe(3.0, [big])
    t.observe(3.5, [])  # released
    t.observe(4.0, [LockSample(42, "public.big", "AccessExclusiveLock", "TRUNCATE big")])  # a later, shorter one
    obs = t.observations()  # the open span closes here
    assert t.polls == 6
    assert [(o.table, o.mode, o.held_s, o.statement) for o in obs] == [
        ("public.big", "AccessExclusiveLock", 2.0, ALTER),  # the longer span of the two, with its statement
        ("public.small", "ShareLock", 0.0, "CREATE INDEX s ON small (x)")]


def test_a_lock_that_goes_and_comes_back_is_two_spans() -> None:
    t = LockTracker("db")
    s = LockSample(7, "public.t", "ShareLock", "CREATE INDEX")
    for at, seen in [(0.0, [s]), (0.4, [s]), (0.5, []), (0.6, [s]), (0.7, [s])]:
        t.observe(at, seen)
    (only,) = t.observations()
    assert only.held_s == 0.4  # the longer of 0.4 s and 0.1 s, never their sum or 0.7 s


def test_rewritten_tables_are_those_whose_storage_changed() -> None:
    before = {"public.a": TableFact(10, 100, "16384"), "public.b": TableFact(10, 100, "16390"),
              "public.gone": TableFact(1, 8, "16400"), "public.unknown": TableFact(1, 8, "")}
    after = {"public.a": "16384", "public.b": "16501", "public.new": "16600", "public.unknown": "1"}
    assert rewritten(before, after) == ["public.b"]


def test_findings_flag_heavy_locks_and_rewrites_of_big_tables_only() -> None:
    tables = {"public.big": TableFact(200_000, 13_000_000, "1"), "public.small": TableFact(2, 16_384, "2"),
              "public.wide": TableFact(50, 20_000_000, "3")}
    locks = [LockObservation("db", "public.big", "AccessExclusiveLock", 0.84, ALTER),
             LockObservation("db", "public.big", "ShareLock", 0.2, ALTER),  # under the heavier one: not again
             LockObservation("db", "public.small", "AccessExclusiveLock", 5.0, "ALTER TABLE small ..."),
             LockObservation("db", "public.wide", "ShareLock", 1.2, "CREATE INDEX w ON wide (x)"),
             LockObservation("db", "public.fresh", "AccessExclusiveLock", 3.0, "CREATE TABLE fresh ...")]
    found = analyse("db", tables, locks, ["public.big", "public.small"], 10_000, 8 * 1024 * 1024)
    assert [(f.kind, f.table) for f in found] == [("lock", "public.big"), ("lock", "public.wide"),
                                                  ("rewrite", "public.big")]
    assert found[0].text.startswith("exclusive lock on public.big (200,000 rows, 13.0 MB) for 0.8s — every read "
                                    "and write of it waits")
    assert ALTER in found[0].text
    assert "share lock on public.wide (50 rows, 20.0 MB) for 1.2s — every write of it waits" in found[1].text
    assert found[2].text.startswith("rewrote public.big (200,000 rows, 13.0 MB)")
    assert locks[0].rows == 200_000 and locks[4].rows is None  # sizes are filled in for the report


def test_threshold_is_above_not_at() -> None:
    tables = {"public.t": TableFact(10_000, 100, "1")}
    lock = [LockObservation("db", "public.t", "AccessExclusiveLock", 1.0, "")]
    assert analyse("db", tables, lock, ["public.t"], 10_000, 8 * 1024 * 1024) == []
    assert len(analyse("db", tables, lock, ["public.t"], 9_999, 8 * 1024 * 1024)) == 2


PG_DUMP = """--
-- PostgreSQL database dump
--
\\restrict 5JmQdTqz1mOEr3h

-- Dumped from database version 15.14
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);


CREATE TABLE public.big (
    id integer NOT NULL,
    n integer NOT NULL
);


\\unrestrict 5JmQdTqz1mOEr3h
"""


def test_postgres_dumps_normalize_away_comments_settings_and_the_restrict_key() -> None:
    assert normalize_schema("postgres", PG_DUMP) == ["CREATE TABLE public.big (", "    id integer NOT NULL,",
                                                     "    n integer NOT NULL", ");"]
    again = PG_DUMP.replace("5JmQdTqz1mOEr3h", "other-key").replace("15.14", "15.15")
    assert schema_diff(normalize_schema("postgres", PG_DUMP), normalize_schema("postgres", again)) == ""


def test_schema_diff_is_a_unified_diff_of_the_change() -> None:
    before = normalize_schema("postgres", PG_DUMP)
    after = normalize_schema("postgres", PG_DUMP.replace("n integer NOT NULL", "n bigint NOT NULL"))
    diff = schema_diff(before, after)
    assert diff.splitlines()[:2] == ["--- schema before", "+++ schema after"]
    assert "-    n integer NOT NULL" in diff and "+    n bigint NOT NULL" in diff


def test_mariadb_dumps_drop_version_comments_and_auto_increment_counters() -> None:
    dump = ("/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n"
            "/*M!999999\\- enable the sandbox mode */\n"
            "CREATE TABLE `t` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  PRIMARY KEY (`id`)\n"
            ") ENGINE=InnoDB AUTO_INCREMENT=4012 DEFAULT CHARSET=utf8mb4;\n")
    assert normalize_schema("mariadb", dump) == [
        "CREATE TABLE `t` (", "  `id` int(11) NOT NULL AUTO_INCREMENT,", "  PRIMARY KEY (`id`)",
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;"]


def test_summary_says_what_happened() -> None:
    report = RehearsalReport("shop", "production", version="v2", ok=False, exit_code=3)
    assert "exited 3" in report.summary()
    quiet = RehearsalReport("shop", "production", rehearsed=False, notes=["nothing to rehearse: no release"])
    assert quiet.summary() == "nothing to rehearse: no release"


@pytest.mark.parametrize(("value", "mode", "rows"), [
    (False, "off", 10_000), (True, "warn", 10_000), ("strict", "strict", 10_000),
    ({"big_table_rows": 500}, "warn", 500), ({"before_deploy": False, "big_table_size": "1g"}, "off", 10_000),
    ({"before_deploy": "strict"}, "strict", 10_000)])
def test_deploy_rehearse_setting(value: object, mode: str, rows: int) -> None:
    settings = DeploySettings.model_validate({"rehearse": value})
    assert rehearse_mode(settings.rehearse) == mode
    assert thresholds(settings.rehearse)[0] == rows


def test_deploy_rehearse_setting_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        DeploySettings.model_validate({"rehearse": "sometimes"})
    with pytest.raises(ValueError, match="big_table_size"):
        DeploySettings.model_validate({"rehearse": {"big_table_size": "huge"}})
