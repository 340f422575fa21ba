"""The agent's look at an environment's databases: open connections and size of a real PostgreSQL and MariaDB,
asked with their own clients in their containers, as gauges on /metrics and in the metric store."""

from __future__ import annotations

import pytest
from tests.integration.db_support import DbApp

from headway.observe.figures import environment_figures
from headway.observe.monitor import Monitor
from headway.observe.spec import write_spec
from headway.observe.store import MetricStore

pytestmark = [pytest.mark.docker]


def test_connections_and_size_of_postgres_and_mariadb(db_app) -> None:  # type: ignore[no-untyped-def]
    app: DbApp = db_app("  db: {engine: postgres}\n  maria: {engine: mariadb, version: '10.11', url_env: MARIA_URL}")
    hw = app.headway()
    hw.databases().dbs.ensure()
    app.psql("CREATE TABLE t AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 20000) g")
    write_spec(hw.target, app.state_dir)
    (app.state_dir / "apps" / app.name / "production" / "current.json").write_text('{"live": 1}')
    monitor = Monitor(app.state_dir)
    monitor.round()
    text = monitor.registry.exposition().decode()
    rows = {line.split("{", 1)[0] + line.split('database="', 1)[1].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith("headway_database_")}
    assert rows["headway_database_connectionsdb"] >= 1  # the query's own session at least
    assert rows["headway_database_size_bytesdb"] > 4_000_000  # 20,000 rows of 200 bytes, and the catalog
    assert rows["headway_database_connectionsmaria"] >= 1
    assert rows["headway_database_size_bytesmaria"] >= 0
    monitor.store.close()
    store = MetricStore(app.state_dir / "agent" / "metrics")
    try:
        assert store.latest("database_size_bytes", {"database": "db"}) is not None
    finally:
        store.close()
    assert environment_figures(app.state_dir, app.name, "production")["app"] == app.name
