"""MariaDB and Redis against real containers: backup → verify → restore round trips (through S3 for MariaDB),
and a dump of one engine refused by another."""

from __future__ import annotations

import pytest
from tests.integration.db_support import DbApp

from headway.errors import HeadwayError

pytestmark = [pytest.mark.docker]


def maria_checksums(app: DbApp) -> dict[str, str]:
    tables = app.mariadb("SHOW TABLES").split()
    out = {}
    for t in tables:
        rows = app.mariadb(f"SELECT COUNT(*), COALESCE(MD5(GROUP_CONCAT(CONCAT_WS('|', id, name, HEX(data)) "
                           f"ORDER BY id SEPARATOR ',')), '') FROM {t}")
        out[t] = rows.strip()
    return out


def test_mariadb_round_trip_through_s3_and_engine_mismatch(db_app, s3_server) -> None:  # type: ignore[no-untyped-def]
    bucket = s3_server.bucket()
    app: DbApp = db_app("  maria: {engine: mariadb, version: '10.11', backup: {storage: [s3], "
                        "check: 'SELECT COUNT(*) = 300 FROM people'}}\n"
                        "  db: {engine: postgres, url_env: PG_URL}",
                        f"storage: {{s3: {{bucket: {bucket}, endpoint: {s3_server.endpoint}, access_key: test, "
                        "secret_key: test}}")
    svc = app.service()
    svc.dbs.ensure()
    app.mariadb("SET SESSION group_concat_max_len = 1000000; "
                "CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(100), data BLOB) ENGINE=InnoDB; "
                "CREATE TABLE notes (id INT PRIMARY KEY, name TEXT, data BLOB); "
                "INSERT INTO people SELECT seq, CONCAT('pérson ', seq), UNHEX(MD5(seq)) FROM seq_1_to_300; "
                "INSERT INTO notes SELECT seq, REPEAT('n', seq % 40), NULL FROM seq_1_to_1000;")
    before = maria_checksums(app)
    rec = svc.backup("maria")
    assert rec.status == "good" and list(rec.locations) == ["s3"]
    assert rec.counts == {"notes": 1000, "people": 300}
    result = svc.verify(rec.id)
    assert result.status == "passed", result.detail

    app.mariadb("DELETE FROM people WHERE id > 10; DROP TABLE notes")
    restored = app.headway().restore_database(rec.id, confirmed=True)
    assert maria_checksums(app) == before
    assert restored.kept_as in app.mariadb("SHOW DATABASES").split()

    # a MariaDB dump cannot go into PostgreSQL: refused before anything happens
    with pytest.raises(HeadwayError, match="is a mariadb dump") as refused:
        app.headway().restore_database(rec.id, into="db", confirmed=True)
    assert refused.value.fix and "--into" in refused.value.fix
    assert maria_checksums(app) == before


def test_redis_round_trip(db_app) -> None:  # type: ignore[no-untyped-def]
    app: DbApp = db_app("  cache: {engine: redis}")
    svc = app.service()
    svc.dbs.ensure()
    commands = "".join(f'SET key:{i} "välue {i}"\n' for i in range(200)).encode()
    app.exec("production", "cache", ["sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli'], stdin=commands)
    app.redis("HSET", "profile", "name", "ada", "lang", "en")
    app.redis("RPUSH", "queue", "a", "b", "c")
    rec = svc.backup("cache")
    assert rec.counts == {"db0": 202}
    result = svc.verify(rec.id)
    assert result.status == "passed", result.detail

    app.redis("FLUSHALL")
    app.redis("SET", "only-after", "x")
    restored = app.headway().restore_database(rec.id, confirmed=True)
    assert app.redis("DBSIZE").strip() == "202"
    assert app.redis("GET", "key:7").strip() == "välue 7"
    assert app.redis("LRANGE", "queue", "0", "-1").split() == ["a", "b", "c"]
    assert app.redis("EXISTS", "only-after").strip() == "0"
    assert "before_restore_" in restored.kept_as
    # the password from the generated credentials still protects the restored server
    assert "NOAUTH" in app.exec("production", "cache", ["redis-cli", "GET", "key:7"])
