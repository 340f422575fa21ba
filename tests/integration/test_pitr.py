"""Point-in-time recovery with pgBackRest against a real PostgreSQL 15 container: continuous archiving (the RPO
test), restore to a time after a crash, restore of a running database, refused targets.

The pgBackRest image is built on first use (apt-get inside `docker build`) and kept, tagged by its base image, so
later runs reuse it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from docker.models.containers import Container
from tests.conftest import _cleanup_app

from headway.data.pitr import (
    BASE_IMAGE,
    DATA_VOLUME,
    PREVIOUS_VOLUME,
    Backup,
    PitrInfo,
    PitrPostgres,
    PostgresCredentials,
    S3Repository,
    derived_image_tag,
    parse_commit_time,
    plan_restore,
    postgres_command,
    postgres_settings,
    render_config,
)
from headway.engine.docker import DockerEngine
from headway.errors import HeadwayError

RPO_LIMIT = timedelta(minutes=5)
ARCHIVE_TIMEOUT = 60  # the default: what production runs with


# -- plain data: settings, config, the recoverable window ------------------------------------------------------
def test_postgres_settings_archive_every_segment_within_a_minute() -> None:
    settings = postgres_settings("shop-production-db")
    assert settings == {"wal_level": "replica", "archive_mode": "on",
                        "archive_command": "pgbackrest --stanza=shop-production-db archive-push %p",
                        "archive_timeout": "60", "max_wal_senders": "3"}
    assert postgres_command(settings)[:3] == ["postgres", "-c", "wal_level=replica"]


def test_config_has_one_stanza_and_keeps_s3_keys_out() -> None:
    creds = PostgresCredentials("shop", "db-secret", "shop")
    s3 = S3Repository(bucket="backups", endpoint="s3.example.com", region="eu-west-1", key="AKIAEXAMPLE",
                      key_secret="s3-secret")
    text = render_config("shop-production-db", creds, s3=s3)
    assert "[shop-production-db]\npg1-path=/var/lib/postgresql/data\n" in text
    assert "repo1-path=/var/lib/pgbackrest" in text and "repo2-type=s3" in text and "repo2-s3-bucket=backups" in text
    assert "pg1-user=shop" in text
    for secret in ("db-secret", "AKIAEXAMPLE", "s3-secret"):
        assert secret not in text
    assert s3.env() == {"PGBACKREST_REPO2_S3_KEY": "AKIAEXAMPLE", "PGBACKREST_REPO2_S3_KEY_SECRET": "s3-secret"}
    assert "s3-secret" not in repr(s3) and "db-secret" not in repr(creds)


def test_derived_image_tag_follows_the_base_image() -> None:
    a = derived_image_tag("postgres:15", "sha256:aaa")
    assert a.startswith("headway-pitr/postgres:15-")
    assert derived_image_tag("postgres:15", "sha256:bbb") != a
    assert derived_image_tag("registry.example.com:5000/team/postgres", "x").startswith("headway-pitr/postgres:latest-")


def test_commit_times_are_read_from_pg_waldump() -> None:
    line = ("rmgr: Transaction len (rec/tot): 34/34, tx: 740, lsn: 0/06000108, prev 0/060000D0, "
            "desc: COMMIT 2026-11-21 23:48:06.858307 UTC")
    assert parse_commit_time(line) == datetime(2026, 11, 21, 23, 48, 6, 858307, tzinfo=UTC)
    assert parse_commit_time("desc: RUNNING_XACTS nextXid 741") is None


def _info(last_commit: datetime | None) -> PitrInfo:
    stop = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
    backup = Backup("20261121-120000F", "full", stop - timedelta(seconds=5), stop, 1, 1, "", "")
    return PitrInfo("s", (backup,), None, None, None, last_commit)


def test_targets_outside_the_recoverable_window_are_refused() -> None:
    info = _info(datetime(2026, 11, 21, 14, 0, tzinfo=UTC))
    now = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
    assert plan_restore(info, datetime(2026, 11, 21, 13, 0, tzinfo=UTC), now=now).method == "time"
    assert plan_restore(info, None, now=now).method == "end-of-archive"
    for when, message in [(datetime(2026, 11, 21, 11, 0, tzinfo=UTC), "before the earliest recoverable time "
                                                                       "2026-11-21 12:00:01 UTC"),
                          (datetime(2026, 11, 21, 14, 30, tzinfo=UTC), "after the latest recoverable time "
                                                                         "2026-11-21 14:00:00 UTC"),
                          (datetime(2026, 11, 21, 16, 0, tzinfo=UTC), "in the future"),
                          (datetime(2026, 11, 21, 13, 0), "has no time zone")]:
        with pytest.raises(HeadwayError) as err:
            plan_restore(info, when, now=now)
        assert message in err.value.message
    # a running server switched WAL just now: the archive is complete up to then, and nothing committed since 14:00
    plan = plan_restore(info, datetime(2026, 11, 21, 14, 30, tzinfo=UTC), now=now,
                        complete_until=datetime(2026, 11, 21, 14, 59, tzinfo=UTC))
    assert plan.method == "end-of-archive"
    with pytest.raises(HeadwayError, match="no base backup"):
        plan_restore(PitrInfo("s", (), None, None, None, None), None)


# -- against a real database ---------------------------------------------------------------------------------
@dataclass
class PitrDatabase:
    pitr: PitrPostgres
    engine: DockerEngine

    @property
    def container(self) -> Container:
        container = self.engine.get(self.pitr.container_name)
        assert container is not None
        return container

    def sql(self, query: str) -> str:
        code, out = self.container.exec_run(["psql", "-X", "-At", "-F", "|", "-v", "ON_ERROR_STOP=1", "-U", "app",
                                             "-d", "app", "-c", query])
        assert code == 0, out.decode(errors="replace")
        return out.decode().strip()

    def write_for(self, phase: int, seconds: float) -> None:
        """Insert rows one transaction each, as fast as the server commits them, for `seconds`."""
        self.sql(f"DO $$ DECLARE stop timestamptz := clock_timestamp() + interval '{seconds} seconds'; BEGIN "
                 f"WHILE clock_timestamp() < stop LOOP INSERT INTO ticks (phase) VALUES ({phase}); COMMIT; END LOOP; "
                 "END $$")

    def volume_exists(self, name: str) -> bool:
        return bool(self.engine.client.volumes.list(filters={"name": f"^{name}$"}))


def _epoch(text: str) -> datetime:
    return datetime.fromtimestamp(float(text), UTC)


@pytest.fixture(scope="module")
def pitr_db(docker_engine: DockerEngine) -> Iterator[PitrDatabase]:
    """A PITR-enabled postgres:15 database of a throwaway app, with a first full backup."""
    app = f"p{uuid.uuid4().hex[:8]}"
    pitr = PitrPostgres(docker_engine, app, "staging", "db", "postgres:15",
                        PostgresCredentials("app", uuid.uuid4().hex, "app"), archive_timeout=ARCHIVE_TIMEOUT)
    try:
        pitr.enable()
        pitr.base_backup("full")
        db = PitrDatabase(pitr, docker_engine)
        db.sql("CREATE TABLE ticks (id bigserial PRIMARY KEY, phase int NOT NULL, "
               "at timestamptz NOT NULL DEFAULT clock_timestamp())")
        yield db
    finally:
        _cleanup_app(docker_engine, app)


def test_enable_runs_postgres_with_continuous_archiving(pitr_db: PitrDatabase, docker_engine: DockerEngine) -> None:
    pitr = pitr_db.pitr
    assert pitr_db.sql("SHOW archive_mode") == "on"
    assert pitr_db.sql("SHOW archive_timeout") == "1min"
    assert pitr_db.sql("SHOW wal_level") == "replica"
    assert pitr_db.sql("SHOW archive_command") == f"pgbackrest --stanza={pitr.stanza} archive-push %p"
    assert pitr.repo_volume == f"{pitr.app}-staging-db-pitr" and pitr_db.volume_exists(pitr.repo_volume)
    container = pitr_db.container
    assert container.labels[DATA_VOLUME] == pitr.data_volume() == f"{pitr.app}-staging-db-data"
    image = docker_engine.client.images.get(container.attrs["Config"]["Image"])
    assert image.labels[BASE_IMAGE] == "postgres:15"
    assert pitr.ensure_image() == container.attrs["Config"]["Image"]  # cached: no second build
    pitr.enable()  # again: nothing to change, the same container
    assert pitr_db.container.id == container.id

    diff = pitr.base_backup("diff")
    assert diff.kind == "diff"
    info = pitr.info()
    assert [b.kind for b in info.backups][-2:] == ["full", "diff"]
    assert info.earliest is not None and info.latest is not None and info.earliest <= info.latest


def test_rpo_restore_to_a_time_after_a_crash(pitr_db: PitrDatabase, docker_engine: DockerEngine) -> None:
    db, pitr = pitr_db, pitr_db.pitr
    db.sql("TRUNCATE ticks")
    db.write_for(1, 8)
    target, = db.sql("SELECT extract(epoch FROM clock_timestamp())").splitlines()
    target_at = _epoch(target)
    db.write_for(2, 4)
    before_target = int(db.sql(f"SELECT count(*) FROM ticks WHERE at <= to_timestamp({target})"))
    phase1 = int(db.sql("SELECT count(*) FROM ticks WHERE phase = 1"))
    assert before_target == phase1 > 100

    # no pg_switch_wal(): with the database idle, archive_timeout alone must close and archive the segment
    idle_from = time.monotonic()
    end_segment = db.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
    deadline = idle_from + ARCHIVE_TIMEOUT + 30
    while db.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < end_segment:
        assert time.monotonic() < deadline, f"{end_segment} not archived {ARCHIVE_TIMEOUT + 30}s into an idle period"
        time.sleep(0.5)  # polling the archiver with a deadline
    idle_archived_after = time.monotonic() - idle_from
    assert idle_archived_after <= ARCHIVE_TIMEOUT + 15

    db.write_for(3, 1)  # written after the last archived segment: lost with the crash
    last_written = _epoch(db.sql("SELECT extract(epoch FROM max(at)) FROM ticks"))
    old_volume = pitr.data_volume()
    db.container.kill()

    info = pitr.info()
    assert info.latest is not None
    loss_window = last_written - info.latest  # what a crash now costs: commits not yet archived
    assert timedelta(0) <= loss_window <= RPO_LIMIT
    assert info.latest >= target_at

    restored = pitr.restore_to(target_at)

    assert restored.method == "time" and restored.target == target_at
    assert restored.recovered_to is not None and restored.recovered_to <= target_at
    assert restored.previous_volume == old_volume and restored.data_volume != old_volume
    assert db.volume_exists(old_volume)  # the crashed data is kept until the next successful restore
    assert db.container.labels[PREVIOUS_VOLUME] == old_volume
    rows = db.sql("SELECT count(*), coalesce(max(phase), 0), min(id), max(id), "
                  f"count(*) FILTER (WHERE at > to_timestamp({target})) FROM ticks").split("|")
    count, max_phase, first_id, last_id, after_target = (int(v) for v in rows)
    assert count == phase1  # every row committed before the target is back …
    assert max_phase == 1 and after_target == 0  # … and none committed after it
    assert last_id - first_id + 1 == count  # no gaps
    assert restored.backup is not None and restored.backup.kind == "full"
    print(f"\nPITR: idle segment archived after {idle_archived_after:.1f}s; data loss window at the crash "
          f"{loss_window.total_seconds():.1f}s; restore {restored.seconds:.1f}s (downtime "
          f"{restored.downtime_seconds:.1f}s, {count} rows)")


def test_restore_of_a_running_database_keeps_only_the_last_previous_volume(pitr_db: PitrDatabase) -> None:
    db, pitr = pitr_db, pitr_db.pitr
    serving = pitr.data_volume()
    kept_before = db.container.labels.get(PREVIOUS_VOLUME)
    db.write_for(4, 1)
    expected = int(db.sql("SELECT count(*) FROM ticks"))

    # the newest commits are in a segment not yet archived: the restore switches WAL and waits for it first
    restored = pitr.restore_to(datetime.now(UTC), backup_after=False)

    assert restored.method == "end-of-archive"
    assert int(db.sql("SELECT count(*) FROM ticks")) == expected
    assert restored.previous_volume == serving and db.volume_exists(serving)
    if kept_before:
        assert not db.volume_exists(kept_before)  # superseded by `serving`
    assert pitr.data_volume() == restored.data_volume


def test_targets_outside_the_window_change_nothing(pitr_db: PitrDatabase) -> None:
    pitr = pitr_db.pitr
    container_id = pitr_db.container.id
    info = pitr.info()
    assert info.earliest is not None
    with pytest.raises(HeadwayError, match="before the earliest recoverable time"):
        pitr.restore_to(info.earliest - timedelta(minutes=10))
    with pytest.raises(HeadwayError, match="in the future"):
        pitr.restore_to(datetime.now(UTC) + timedelta(hours=1))
    assert pitr_db.container.id == container_id and pitr_db.container.status == "running"


def test_a_failed_restore_leaves_the_live_database_as_it_was(pitr_db: PitrDatabase,
                                                             docker_engine: DockerEngine) -> None:
    """The archive lost the WAL segment the target needs: recovery fails after the database was stopped, and the
    database comes back on its own volume with every row."""
    db, pitr = pitr_db, pitr_db.pitr
    db.write_for(5, 1)
    target, segment = db.sql("SELECT extract(epoch FROM clock_timestamp()), "
                             "pg_walfile_name(pg_current_wal_lsn())").split("|")
    db.write_for(6, 1)
    db.sql("SELECT pg_switch_wal()")
    deadline = time.monotonic() + 60
    while db.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment:
        assert time.monotonic() < deadline, f"{segment} was not archived"
        time.sleep(0.2)  # polling the archiver with a deadline
    removed = docker_engine.client.containers.run(
        pitr.ensure_image(), ["sh", "-c", f"rm -v /var/lib/pgbackrest/archive/*/*/*/{segment}-*"], remove=True,
        volumes={pitr.repo_volume: {"bind": "/var/lib/pgbackrest", "mode": "rw"}})
    assert segment.encode() in removed
    serving, container_id = pitr.data_volume(), db.container.id
    rows = db.sql("SELECT count(*), max(id) FROM ticks")
    volumes_before = {v.name for v in docker_engine.volumes([f"dev.headway.app={pitr.app}"])}

    with pytest.raises(HeadwayError) as info:
        pitr.restore_to(_epoch(target), backup_after=False)

    assert "missing from the repository" in info.value.message
    assert db.container.id == container_id and db.container.status == "running"
    assert pitr.data_volume() == serving
    assert db.sql("SELECT count(*), max(id) FROM ticks") == rows
    assert {v.name for v in docker_engine.volumes([f"dev.headway.app={pitr.app}"])} == volumes_before
    leftovers = [c.name for c in docker_engine.containers([f"dev.headway.app={pitr.app}"])]
    assert leftovers == [pitr.container_name]
