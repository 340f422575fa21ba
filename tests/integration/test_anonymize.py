"""Anonymized staging against real PostgreSQL 15 and MariaDB 10.11 containers: the rules rewrite exactly the listed
columns, fakes are deterministic and unique, a failure rolls everything back, and production is never a target."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from docker.models.containers import Container

from headway.data.anonymize import (
    DatabaseTarget,
    anonymize,
    fake_value,
    load_rules,
    refuse_production_target,
)
from headway.errors import ConfigError, HeadwayError

from tests.conftest import FIXTURES

pytestmark = [pytest.mark.docker]
RULES = FIXTURES / "anonymize"
USERS, ORDERS = 300, 600

SCHEMA = {
    "postgres": """
        CREATE TABLE users (
            id serial PRIMARY KEY, email varchar(255) NOT NULL UNIQUE, name text, phone varchar(32),
            password_hash text NOT NULL, notes text, plan text NOT NULL DEFAULT 'free',
            created_at timestamp NOT NULL DEFAULT '2026-01-02 03:04:05');
        CREATE TABLE orders (
            id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users (id), shipping_address text,
            note text CHECK (note IS NULL OR note <> 'forbidden'), total numeric(10, 2) NOT NULL);
        INSERT INTO users (id, email, name, phone, password_hash, notes, plan)
            SELECT i, 'person' || i || '@corp.example.com', CASE WHEN i % 10 = 0 THEN NULL ELSE 'Person ' || i END,
                   '+44 20 7946 ' || lpad(i::text, 4, '0'), 'pbkdf2$' || md5(i::text), 'likes ' || i,
                   CASE WHEN i % 3 = 0 THEN 'pro' ELSE 'free' END
            FROM generate_series(1, 299) i;
        INSERT INTO users (id, email, name, phone, password_hash, notes)
            VALUES (300, 'zoë.ünal@corp.example.com', 'Zoë Ünal', NULL, 'x', NULL);
        INSERT INTO orders (user_id, shipping_address, note, total)
            SELECT 1 + i % 300, i || ' Main Street', 'gift ' || i, i * 1.5 FROM generate_series(1, 600) i;
    """,
    "mariadb": """
        CREATE TABLE users (
            id int AUTO_INCREMENT PRIMARY KEY, email varchar(255) NOT NULL UNIQUE, name text, phone varchar(32),
            password_hash text NOT NULL, notes text, plan varchar(16) NOT NULL DEFAULT 'free',
            created_at datetime NOT NULL DEFAULT '2026-01-02 03:04:05') ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
        CREATE TABLE orders (
            id int AUTO_INCREMENT PRIMARY KEY, user_id int NOT NULL, shipping_address text,
            note varchar(200) CHECK (note IS NULL OR note <> 'forbidden'), total decimal(10, 2) NOT NULL,
            FOREIGN KEY (user_id) REFERENCES users (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
        INSERT INTO users (id, email, name, phone, password_hash, notes, plan)
            SELECT seq, CONCAT('person', seq, '@corp.example.com'), IF(seq % 10 = 0, NULL, CONCAT('Person ', seq)),
                   CONCAT('+44 20 7946 ', LPAD(seq, 4, '0')), CONCAT('pbkdf2$', MD5(seq)), CONCAT('likes ', seq),
                   IF(seq % 3 = 0, 'pro', 'free')
            FROM seq_1_to_299;
        INSERT INTO users (id, email, name, phone, password_hash, notes)
            VALUES (300, 'zoë.ünal@corp.example.com', 'Zoë Ünal', NULL, 'x', NULL);
        INSERT INTO orders (user_id, shipping_address, note, total)
            SELECT 1 + seq % 300, CONCAT(seq, ' Main Street'), CONCAT('gift ', seq), seq * 1.5 FROM seq_1_to_600;
    """,
}
# '<null>' marks NULL the same way in both clients' output
USERS_SQL = ("SELECT id, email, coalesce(name, '<null>'), coalesce(phone, '<null>'), password_hash, "
             "coalesce(notes, '<null>'), plan, created_at FROM users ORDER BY id")
ORDERS_SQL = "SELECT id, user_id, coalesce(shipping_address, '<null>'), coalesce(note, '<null>'), total " \
             "FROM orders ORDER BY id"


@dataclass
class SqlServer:
    """A real database server container; `sql` runs statements as its administrator and returns the rows."""

    container: Container
    engine: str  # postgres | mariadb
    user: str
    password: str

    def sql(self, statements: str, database: str | None = None) -> list[list[str]]:
        if self.engine == "postgres":
            argv = ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-U", self.user,
                    "-d", database or self.user, "-c", statements]
        else:  # root through the unix socket
            argv = ["mariadb", "-uroot", "--batch", "--skip-column-names", *([database] if database else []),
                    "-e", statements]
        code, out = self.container.exec_run(argv)
        assert code == 0, f"{statements[:200]!r} failed: {out.decode(errors='replace')}"
        return [line.split("\t") for line in out.decode().splitlines() if line]

    def create_database(self, name: str) -> None:
        if self.engine == "postgres":
            self.sql(f'CREATE DATABASE "{name}"')
        else:
            self.sql(f"CREATE DATABASE `{name}`; GRANT ALL ON `{name}`.* TO '{self.user}'@'%'")


def _sql_server(docker_engine, engine: str, image: str) -> Iterator[SqlServer]:
    if not docker_engine.image_exists(image):
        pytest.fail(f"image {image} is needed for this test; run scripts/bootstrap.sh")
    password = uuid.uuid4().hex
    env = ({"POSTGRES_USER": "app", "POSTGRES_PASSWORD": password, "POSTGRES_DB": "app"} if engine == "postgres"
           else {"MARIADB_ROOT_PASSWORD": uuid.uuid4().hex, "MARIADB_USER": "app", "MARIADB_PASSWORD": password,
                 "MARIADB_DATABASE": "app"})
    container = docker_engine.client.containers.run(image, name=f"hw-test-anon-{engine}-{uuid.uuid4().hex[:6]}",
                                                    environment=env, detach=True,
                                                    labels={"dev.headway.test": "anonymize"})
    # ready = the real server answers over TCP (the entrypoint's initialisation server listens on its socket only)
    probe = (["pg_isready", "-q", "-h", "127.0.0.1", "-U", "app"] if engine == "postgres"
             else ["mariadb-admin", "ping", "--silent", "-h", "127.0.0.1", "-uapp"])
    deadline = time.monotonic() + 90
    try:
        while container.exec_run(probe, environment={"MYSQL_PWD": password}).exit_code != 0:
            container.reload()
            if container.status != "running" or time.monotonic() > deadline:
                pytest.fail(f"{image} did not become ready: {container.logs(tail=20).decode(errors='replace')}")
            time.sleep(0.1)  # polling readiness with a deadline
        yield SqlServer(container, engine, "app", password)
    finally:
        container.remove(force=True, v=True)


@pytest.fixture(scope="module")
def sql_postgres(docker_engine) -> Iterator[SqlServer]:
    yield from _sql_server(docker_engine, "postgres", "postgres:15")


@pytest.fixture(scope="module")
def sql_mariadb(docker_engine) -> Iterator[SqlServer]:
    yield from _sql_server(docker_engine, "mariadb", "mariadb:10.11")


@dataclass
class ShopDatabase:
    server: SqlServer
    database: str
    target: DatabaseTarget

    def users(self) -> list[list[str]]:
        return self.server.sql(USERS_SQL, self.database)

    def orders(self) -> list[list[str]]:
        return self.server.sql(ORDERS_SQL, self.database)


@pytest.fixture(params=["postgres", "mariadb"])
def shop_db(request: pytest.FixtureRequest) -> Iterator[ShopDatabase]:
    """A fresh database with users and orders, in a real PostgreSQL or MariaDB server."""
    engine = request.param
    server = request.getfixturevalue(f"sql_{engine}")
    database = f"anon_{uuid.uuid4().hex[:8]}"
    server.create_database(database)
    server.sql(SCHEMA[engine], database)
    yield ShopDatabase(server, database, DatabaseTarget(container=server.container.name, engine=engine,
                                                        user=server.user, database=database,
                                                        password=server.password))


def test_rules_rewrite_listed_columns_deterministically_and_keep_the_rest(shop_db, docker_engine):
    users_before, orders_before = shop_db.users(), shop_db.orders()
    assert len(users_before) == USERS and len(orders_before) == ORDERS

    report = anonymize(docker_engine, shop_db.target, load_rules(RULES / "shop.yml"), environment="staging")

    users, orders = shop_db.users(), shop_db.orders()
    emails = [u[1] for u in users]
    assert len(set(emails)) == USERS  # the UNIQUE index held, and would catch a collision anyway
    for before, after in zip(users_before, users, strict=True):
        uid, email, name, phone, password_hash, notes, plan, created_at = after
        assert uid == before[0]
        assert re.fullmatch(r"user_[0-9a-f]{20}@example\.invalid", email)
        # deterministic: the same value as headway's reference, on either engine
        assert email == fake_value("fake_email", before[1])
        assert name == ("<null>" if before[2] == "<null>" else fake_value("fake_name", before[2]))
        assert phone == ("<null>" if before[3] == "<null>" else fake_value("fake_phone", before[3]))
        assert password_hash == "!disabled"
        assert notes == "<null>"
        assert (plan, created_at) == (before[6], before[7])  # `keep` and unlisted columns are untouched
    assert not any("corp.example.com" in e for e in emails)
    assert "Zoë Ünal" not in {u[2] for u in users}
    for before, after in zip(orders_before, orders, strict=True):
        assert after[2] == fake_value("hash", before[2])
        assert [after[0], after[1], after[3], after[4]] == [before[0], before[1], before[3], before[4]]

    assert report.rows("users") == USERS and report.rows("orders") == ORDERS
    assert report.values("users", "email") == USERS
    assert report.values("users", "name") == USERS - 29  # every 10th of the first 299 has none; NULL stays NULL
    assert report.values("users", "phone") == USERS - 1
    assert report.values("users", "notes") == USERS
    assert report.values("users", "plan") == 0  # keep
    assert report.values("orders", "shipping_address") == ORDERS


def test_a_failing_rule_leaves_every_table_unchanged(shop_db, docker_engine):
    users_before, orders_before = shop_db.users(), shop_db.orders()
    with pytest.raises(HeadwayError) as info:
        anonymize(docker_engine, shop_db.target, load_rules(RULES / "failing.yml"), environment="staging")
    assert "nothing was changed" in info.value.message
    assert "orders" in info.value.message and "onstraint" in info.value.message.replace("CONSTRAINT", "constraint")
    assert "Failing row" not in (info.value.details or "")  # row contents never reach the output
    # users was updated before orders failed: the transaction took both back
    assert shop_db.users() == users_before
    assert shop_db.orders() == orders_before


def test_unknown_tables_and_columns_are_refused_with_what_exists(shop_db, docker_engine):
    users_before = shop_db.users()
    with pytest.raises(ConfigError) as info:
        anonymize(docker_engine, shop_db.target, load_rules(RULES / "unknown.yml"), environment="staging")
    message = str(info.value)
    path = str(RULES / "unknown.yml")
    assert f"{path}:3: tables.users.emial: no such column in users; did you mean `email`? " \
           "columns: id, email, name, phone, password_hash, notes, plan, created_at" in message
    assert f"{path}:5: tables.customers: no such table in database {shop_db.database}" in message
    assert "tables: orders, users" in message
    assert shop_db.users() == users_before


def test_strict_rules_must_name_every_text_column(shop_db, docker_engine):
    with pytest.raises(ConfigError) as info:
        anonymize(docker_engine, shop_db.target, load_rules(RULES / "strict.yml"), environment="staging")
    unlisted = re.search(r"these text columns have no rule: (.*)", str(info.value))
    assert unlisted is not None
    assert set(unlisted.group(1).split(", ")) == {"users.phone", "users.password_hash", "users.notes", "users.plan",
                                                  "orders.shipping_address", "orders.note"}


@pytest.mark.parametrize("environment", ["production", "Production", "prod"])
def test_production_is_never_a_target(sql_postgres, docker_engine, environment):
    target = DatabaseTarget(container=sql_postgres.container.name, engine="postgres", user=sql_postgres.user,
                            database=sql_postgres.user, password=sql_postgres.password)
    with pytest.raises(HeadwayError) as info:
        anonymize(docker_engine, target, load_rules(RULES / "shop.yml"), environment=environment)
    assert f"refusing to write into {environment}" in info.value.message
    with pytest.raises(HeadwayError):
        refuse_production_target(environment)
    refuse_production_target("staging")  # anything else is allowed
