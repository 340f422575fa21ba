"""PostgreSQL backups against real containers and a real S3-compatible server: round trip, damaged backups,
a full disk, an interrupted restore, encryption, retention, bad input."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyrage
import pytest
from tests.integration.db_support import DbApp

from headway.engine import exec_stream
from headway.data.backup import RestoreFailed
from headway.data.pipeline import IntegrityError
from headway.data.storage import StorageError
from headway.errors import ConfigError, HeadwayError, NotFound

pytestmark = [pytest.mark.docker]

SEED = """
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, avatar bytea, joined timestamptz DEFAULT now());
CREATE TABLE orders (id bigserial PRIMARY KEY, customer int REFERENCES customers(id), total numeric(10,2),
                     note text);
CREATE INDEX orders_customer ON orders(customer);
INSERT INTO customers (name, avatar)
  SELECT 'cüstomer ' || g, decode(md5(g::text), 'hex') FROM generate_series(1, 500) g;
INSERT INTO orders (customer, total, note) SELECT 1 + g % 500, g * 1.25, repeat('x', g % 50)
  FROM generate_series(1, 5000) g;
"""


def pg_app(make, storage: str = "", backup: str = "") -> DbApp:  # type: ignore[no-untyped-def]
    app: DbApp = make(f"  db: {{engine: postgres{', backup: ' + backup if backup else ''}}}", storage)
    app.service().dbs.ensure()
    app.psql(SEED)
    return app


def databases(app: DbApp) -> list[str]:
    return app.psql("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1").split()


def test_round_trip_local_and_s3(db_app, s3_server) -> None:  # type: ignore[no-untyped-def]
    bucket = s3_server.bucket()
    app = pg_app(db_app, storage=f"storage: {{s3: {{bucket: {bucket}, prefix: backups, endpoint: {s3_server.endpoint},"
                                 " access_key: test, secret_key: test}}",
                 backup="{storage: [local, s3], check: 'SELECT count(*) = 500 FROM customers'}")
    before = app.pg_checksums()
    svc = app.service()
    rec = svc.backup()
    assert rec.status == "good" and set(rec.locations) == {"local", "s3"}
    assert rec.counts == {"public.customers": 500, "public.orders": 5000}
    assert Path(rec.locations["local"]).stat().st_size == rec.size
    assert rec.locations["s3"].startswith(f"s3://{bucket}/backups/{app.name}/production/db/")

    result = svc.verify(rec.id)
    assert result.status == "passed", result.detail
    assert "check passed" in result.detail
    assert svc.catalog.get(rec.id).verified_at is not None

    app.psql("DELETE FROM orders WHERE id % 2 = 0; UPDATE customers SET name = 'changed'; "
             "CREATE TABLE later (x int)")
    assert app.pg_checksums() != before
    # the local copy is gone: the restore reads the S3 one
    Path(rec.locations["local"]).unlink()
    restored = app.headway().restore_database(rec.id, confirmed=True)
    assert app.pg_checksums() == before
    assert restored.safety_backup is not None and svc.catalog.get(restored.safety_backup).status == "good"
    assert restored.kept_as in databases(app)  # the data that was live is kept until the next restore

    # a second restore drops what the first one kept
    second = app.headway().restore_database(rec.id, confirmed=True)
    names = databases(app)
    assert second.kept_as in names and restored.kept_as not in names
    assert not [n for n in names if "_restore_" in n and "_before_restore_" not in n]


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_damaged_backup_is_refused_before_anything_is_touched(db_app, damage: str) -> None:  # type: ignore[no-untyped-def]
    app = pg_app(db_app)
    svc = app.service()
    rec = svc.backup()
    path = Path(rec.locations["local"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else
                     data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:])
    app.psql("INSERT INTO customers (name) VALUES ('after the backup')")
    live = app.pg_checksums()
    count_before = len(svc.backups())

    assert svc.verify(rec.id).status == "failed"
    with pytest.raises(IntegrityError, match="checksum"):
        app.headway().restore_database(rec.id, confirmed=True)
    assert app.pg_checksums() == live
    assert len(svc.backups()) == count_before  # not even a safety backup: nothing was touched
    assert not [n for n in databases(app) if "_restore_" in n]


def test_full_disk_leaves_no_good_record_and_keeps_older_backups(db_app, small_disk: Path) -> None:  # type: ignore[no-untyped-def]
    app = pg_app(db_app, storage=f"storage: {{local: {{path: {small_disk}}}}}")
    svc = app.service()
    first = svc.backup()
    assert first.status == "good"
    # ~4 MB that does not compress: more than the 2 MiB disk holds
    app.psql("CREATE TABLE blobs AS SELECT decode(string_agg(md5(random()::text), ''), 'hex') AS b "
             "FROM generate_series(1, 250000) g")
    with pytest.raises(StorageError, match="no space left"):
        svc.backup()
    records = svc.backups()
    assert records[-1].status == "failed" and "no space" in (records[-1].error or "")
    assert [r.id for r in svc.catalog.good("db")] == [first.id]
    assert Path(first.locations["local"]).is_file()
    assert not [p for p in small_disk.rglob("*") if p.is_file() and ".partial" in p.name]
    svc.check(first, None)  # the older backup still reads back whole


def test_interrupted_restore_leaves_the_live_database_intact(db_app) -> None:  # type: ignore[no-untyped-def]
    app = pg_app(db_app)
    app.psql("INSERT INTO orders (customer, total, note) SELECT 1, g, repeat('y', 200) "
             "FROM generate_series(1, 300000) g")
    svc = app.service()
    rec = svc.backup()
    app.psql("DELETE FROM orders WHERE id > 1000")
    live = app.pg_checksums()
    container = svc.dbs.container(svc.dbs.spec("db"))
    assert container is not None
    killed: list[str] = []
    done = threading.Event()
    # the image has no pkill: find pg_restore by its /proc entry
    kill = ('for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = pg_restore ] && '
            'kill -9 "${p#/proc/}" && echo killed; done; true')

    def kill_pg_restore() -> None:
        while not done.is_set() and not killed:
            code, out, _ = exec_stream.run(svc.engine.client, container.id or "", ["sh", "-c", kill])
            if "killed" in out:
                killed.append("pg_restore")
            time.sleep(0.01)  # polling for the restore process to appear

    killer = threading.Thread(target=kill_pg_restore)
    killer.start()
    try:
        with pytest.raises(RestoreFailed):
            app.headway().restore_database(rec.id, confirmed=True)
    finally:
        done.set()
        killer.join()
    assert killed, "pg_restore was never seen running"
    assert app.pg_checksums() == live
    assert not [n for n in databases(app) if "_restore_" in n]


def test_encrypted_backup_cannot_be_restored_without_the_key(db_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = pyrage.x25519.Identity.generate()
    app = pg_app(db_app, backup=f"{{encrypt_to: [{key.to_public()}]}}")
    svc = app.service()
    rec = svc.backup()
    stored = Path(rec.locations["local"]).read_bytes()
    assert rec.encrypted and stored.startswith(b"age-encryption.org/v1")
    assert b"customers" not in stored

    assert svc.verify(rec.id).status == "checksum-only"
    app.psql("DELETE FROM orders")
    live = app.pg_checksums()
    with pytest.raises(ConfigError, match="identity"):
        app.headway().restore_database(rec.id, confirmed=True)
    with pytest.raises(IntegrityError, match="wrong key"):
        app.headway().restore_database(rec.id, identities=[pyrage.x25519.Identity.generate()], confirmed=True)
    assert app.pg_checksums() == live
    assert svc.verify(rec.id, identities=[key]).status == "passed"


def test_retention_never_deletes_the_newest_good_backup(db_app) -> None:  # type: ignore[no-untyped-def]
    app = pg_app(db_app, backup="{retention: {last: 1, daily: 0, weekly: 0, monthly: 0}}")
    svc = app.service()
    first = svc.backup()
    second = svc.backup()
    good = svc.catalog.good("db")
    assert [r.id for r in good] == [second.id]
    assert not Path(first.locations["local"]).exists() and Path(second.locations["local"]).exists()
    assert svc.catalog.get(first.id).status == "deleted"
    # a failing backup afterwards deletes nothing
    with pytest.raises(HeadwayError, match="failed"):
        _backup_with_broken_dump(svc)
    assert svc.backups()[-1].status == "failed"
    assert [r.id for r in svc.catalog.good("db")] == [second.id]
    assert Path(second.locations["local"]).exists()


def _backup_with_broken_dump(svc) -> None:  # type: ignore[no-untyped-def]
    """A dump tool that fails half-way: pg_dump of a database that does not exist."""
    spec = svc.dbs.spec("db")
    broken = spec.__class__(**{**spec.__dict__, "database": "no_such_database"})
    svc.dbs.specs["db"] = broken
    svc.backup("db")


def test_bad_input_is_refused_with_a_fix(db_app) -> None:  # type: ignore[no-untyped-def]
    app = pg_app(db_app)
    svc = app.service()
    with pytest.raises(NotFound) as unknown:
        svc.get("db-19990101T000000Z-dead")
    assert unknown.value.fix and "db backups" in unknown.value.fix
    with pytest.raises(NotFound, match="no good backup"):
        svc.get(None)
    with pytest.raises(ConfigError, match="no database 'nope'"):
        svc.backup("nope")
