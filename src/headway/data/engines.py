"""What headway knows about each database engine: its container, its URL, and its own dump and restore tools."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from headway.errors import ConfigError

# every engine's tools run inside a container of the engine's image: the database's own, or a throwaway one


@dataclass(frozen=True)
class Endpoint:
    """How tools inside a container reach a database: host ('' = the local socket), port, user, password."""

    host: str
    port: int
    user: str
    password: str
    database: str
    tls: bool = False

    def __repr__(self) -> str:
        return f"Endpoint({self.user}@{self.host or 'local'}:{self.port}/{self.database})"


class Dialect:
    engine = ""
    port = 0
    data_path = ""
    suffix = ""
    content = ""  # what the dump is, for people

    def image(self, version: str) -> str:
        raise NotImplementedError

    def container_env(self, database: str, user: str, password: str, root_password: str) -> dict[str, str]:
        raise NotImplementedError

    def container_command(self) -> list[str] | None:
        return None

    def health_command(self, database: str, user: str) -> list[str]:
        raise NotImplementedError

    def url(self, host: str, port: int, user: str, password: str, database: str) -> str:
        raise NotImplementedError

    def parse_url(self, url: str) -> Endpoint:
        raise NotImplementedError

    def tool_env(self, ep: Endpoint) -> dict[str, str]:
        raise NotImplementedError

    def dump_argv(self, ep: Endpoint) -> list[str]:
        raise NotImplementedError

    def restore_argv(self, ep: Endpoint, database: str) -> list[str]:
        raise NotImplementedError

    def sql_argv(self, ep: Endpoint, database: str, sql: str) -> list[str]:
        """A command printing each result row as tab-separated values, one per line."""
        raise NotImplementedError

    def shell_argv(self, ep: Endpoint) -> list[str]:
        raise NotImplementedError

    def tables_sql(self, database: str) -> str:
        raise NotImplementedError

    def count_sql(self, database: str, tables: list[str]) -> str:
        raise NotImplementedError

    def create_sql(self, database: str) -> str:
        raise NotImplementedError

    def drop_sql(self, database: str) -> str:
        raise NotImplementedError

    def list_databases_sql(self) -> str:
        raise NotImplementedError

    def admin_database(self, ep: Endpoint) -> str:
        return ep.database


def _ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ConfigError(f"{name!r} is not a plain identifier", "use letters, digits and _")
    return name


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


class Postgres(Dialect):
    engine = "postgres"
    port = 5432
    data_path = "/var/lib/postgresql/data"
    suffix = ".pgdump.zst"
    content = "pg_dump custom format"

    def image(self, version: str) -> str:
        return f"postgres:{version}"

    def container_env(self, database: str, user: str, password: str, root_password: str) -> dict[str, str]:
        return {"POSTGRES_USER": user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": database}

    def health_command(self, database: str, user: str) -> list[str]:
        return ["pg_isready", "-q", "-h", "127.0.0.1", "-U", user, "-d", database]

    def url(self, host: str, port: int, user: str, password: str, database: str) -> str:
        return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{database}"

    def parse_url(self, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ConfigError(f"external_url for postgres starts with {parts.scheme}://",
                              "write postgresql://USER:PASSWORD@HOST:5432/DATABASE")
        sslmode = parse_qs(parts.query).get("sslmode", ["require"])[0]
        return Endpoint(host=parts.hostname or "", port=parts.port or 5432, user=_unquote(parts.username),
                        password=_unquote(parts.password), database=parts.path.lstrip("/") or "postgres",
                        tls=sslmode not in ("disable", "allow", "prefer"))

    def tool_env(self, ep: Endpoint) -> dict[str, str]:
        env = {"PGUSER": ep.user, "PGDATABASE": ep.database, "PGPORT": str(ep.port), "PGCONNECT_TIMEOUT": "10"}
        if ep.host:
            env.update({"PGHOST": ep.host, "PGPASSWORD": ep.password,
                        "PGSSLMODE": "require" if ep.tls else "disable"})
        return env

    def dump_argv(self, ep: Endpoint) -> list[str]:
        # zlib level 1, not 0: an uncompressed custom dump holds one data chunk per row, which makes pg_restore ~15%
        # slower; level 1 costs pg_dump next to nothing (zstd after it then gains little, and costs little)
        return ["pg_dump", "--format=custom", "--compress=1", "--dbname", ep.database]

    def snapshot_dump_argv(self, ep: Endpoint, snapshot: str) -> list[str]:
        """pg_dump reading the snapshot another session exported (pg_export_snapshot): what it dumps is exactly what
        that session sees, so the session can count the rows of the dump while the dump runs."""
        if not re.fullmatch(r"[0-9A-Fa-f-]+", snapshot):
            raise ConfigError(f"{snapshot!r} is not a snapshot id", "report this")
        return [*self.dump_argv(ep), f"--snapshot={snapshot}"]

    def restore_argv(self, ep: Endpoint, database: str) -> list[str]:
        return ["pg_restore", "--exit-on-error", "--no-owner", "--no-privileges", "--dbname", database]

    def session_argv(self, ep: Endpoint, database: str) -> list[str]:
        """psql reading statements from stdin and printing rows as tab-separated values (one session)."""
        return ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", database]

    def sql_argv(self, ep: Endpoint, database: str, sql: str) -> list[str]:
        return ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql]

    def shell_argv(self, ep: Endpoint) -> list[str]:
        return ["psql", "-X", "-d", ep.database]

    def tables_sql(self, database: str) -> str:
        return ("SELECT quote_ident(schemaname) || '.' || quote_ident(relname) FROM pg_stat_user_tables "
                "ORDER BY 1")

    def count_sql(self, database: str, tables: list[str]) -> str:
        return " UNION ALL ".join(f"SELECT {_literal(t)}, count(*) FROM {t}" for t in tables)

    def create_sql(self, database: str) -> str:
        return f'CREATE DATABASE "{_ident(database)}"'

    def drop_sql(self, database: str) -> str:
        return f'DROP DATABASE IF EXISTS "{_ident(database)}" WITH (FORCE)'

    def list_databases_sql(self) -> str:
        return "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1"

    def admin_database(self, ep: Endpoint) -> str:
        return "postgres"

    def swap_sql(self, live: str, new: str, old: str) -> list[str]:
        """Statements that put `new` in place of `live` (kept as `old`); the renames commit together. The second
        terminates every session on either database and waits (up to 5 s) until they are gone, so the renames
        find nobody connected; it runs in one psql session with the others (`script_argv`)."""
        names = f"({_literal(live)}, {_literal(new)})"
        return [f'ALTER DATABASE "{_ident(live)}" WITH ALLOW_CONNECTIONS false',
                "DO $$ BEGIN FOR i IN 1..500 LOOP "
                f"PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN {names} "
                "AND pid <> pg_backend_pid(); PERFORM pg_stat_clear_snapshot(); "
                f"EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname IN {names} "
                "AND pid <> pg_backend_pid()); PERFORM pg_sleep(0.01); END LOOP; END $$",
                f'BEGIN; ALTER DATABASE "{_ident(live)}" RENAME TO "{_ident(old)}"; '
                f'ALTER DATABASE "{_ident(new)}" RENAME TO "{_ident(live)}"; COMMIT']

    def script_argv(self, database: str, statements: list[str]) -> list[str]:
        """psql running each statement in turn in one session (each its own transaction), stopping at the first
        error."""
        argv = ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", database]
        for sql in statements:
            argv += ["-c", sql]
        return argv

    def unswap_sql(self, live: str) -> str:
        return f'ALTER DATABASE "{_ident(live)}" WITH ALLOW_CONNECTIONS true'


class MariaDB(Dialect):
    engine = "mariadb"
    port = 3306
    data_path = "/var/lib/mysql"
    suffix = ".sql.zst"
    content = "SQL dump (single transaction)"
    env_prefix = "MARIADB"
    client = "mariadb"
    dumper = "mariadb-dump"
    admin = "mariadb-admin"

    def image(self, version: str) -> str:
        return f"{self.engine}:{version}"

    def container_env(self, database: str, user: str, password: str, root_password: str) -> dict[str, str]:
        p = self.env_prefix
        return {f"{p}_ROOT_PASSWORD": root_password, f"{p}_DATABASE": database, f"{p}_USER": user,
                f"{p}_PASSWORD": password}

    def health_command(self, database: str, user: str) -> list[str]:
        return [self.admin, "ping", "-h", "127.0.0.1", "--silent"]

    def url(self, host: str, port: int, user: str, password: str, database: str) -> str:
        return f"mysql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{database}"

    def parse_url(self, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
            raise ConfigError(f"external_url for {self.engine} starts with {parts.scheme}://",
                              "write mysql://USER:PASSWORD@HOST:3306/DATABASE")
        query = parse_qs(parts.query)
        tls = query.get("ssl", query.get("ssl-mode", ["true"]))[0].lower() not in ("false", "0", "disabled")
        return Endpoint(host=parts.hostname or "", port=parts.port or 3306, user=_unquote(parts.username),
                        password=_unquote(parts.password), database=parts.path.lstrip("/"), tls=tls)

    def tool_env(self, ep: Endpoint) -> dict[str, str]:
        return {"MYSQL_PWD": ep.password}

    def _conn(self, ep: Endpoint) -> list[str]:
        args = [f"--user={ep.user}"]
        if ep.host:
            args += [f"--host={ep.host}", f"--port={ep.port}"]
            if ep.tls:
                args.append("--ssl" if self.engine == "mariadb" else "--ssl-mode=REQUIRED")
        return args

    def dump_argv(self, ep: Endpoint) -> list[str]:
        return [self.dumper, *self._conn(ep), "--single-transaction", "--quick", "--routines", "--triggers",
                "--events", "--hex-blob", "--default-character-set=utf8mb4", ep.database]

    def restore_argv(self, ep: Endpoint, database: str) -> list[str]:
        return [self.client, *self._conn(ep), "--binary-mode", "--default-character-set=utf8mb4", database]

    def sql_argv(self, ep: Endpoint, database: str, sql: str) -> list[str]:
        return [self.client, *self._conn(ep), "-N", "-B", "-e", sql, database]

    def shell_argv(self, ep: Endpoint) -> list[str]:
        return [self.client, *self._conn(ep), ep.database]

    def tables_sql(self, database: str) -> str:
        return (f"SELECT table_name FROM information_schema.tables WHERE table_schema = {_literal(database)} "
                "AND table_type = 'BASE TABLE' ORDER BY 1")

    def count_sql(self, database: str, tables: list[str]) -> str:
        return " UNION ALL ".join(f"SELECT {_literal(t)}, COUNT(*) FROM `{_ident(database)}`.`{_ident(t)}`"
                                  for t in tables)

    def create_sql(self, database: str) -> str:
        return f"CREATE DATABASE `{_ident(database)}` CHARACTER SET utf8mb4"

    def drop_sql(self, database: str) -> str:
        return f"DROP DATABASE IF EXISTS `{_ident(database)}`"

    def list_databases_sql(self) -> str:
        return "SHOW DATABASES"

    def admin_database(self, ep: Endpoint) -> str:
        return "mysql"

    def swap_sql(self, live: str, new: str, old: str, tables_live: list[str], tables_new: list[str]) -> str:
        """One RENAME TABLE: the live tables move to `old`, the restored ones take their place, atomically."""
        moves = [f"`{_ident(live)}`.`{_ident(t)}` TO `{_ident(old)}`.`{_ident(t)}`" for t in tables_live]
        moves += [f"`{_ident(new)}`.`{_ident(t)}` TO `{_ident(live)}`.`{_ident(t)}`" for t in tables_new]
        return "RENAME TABLE " + ", ".join(moves)


class MySQL(MariaDB):
    engine = "mysql"
    env_prefix = "MYSQL"
    client = "mysql"
    dumper = "mysqldump"
    admin = "mysqladmin"

    def container_env(self, database: str, user: str, password: str, root_password: str) -> dict[str, str]:
        return {"MYSQL_ROOT_PASSWORD": root_password, "MYSQL_DATABASE": database, "MYSQL_USER": user,
                "MYSQL_PASSWORD": password}


class Redis(Dialect):
    engine = "redis"
    port = 6379
    data_path = "/data"
    suffix = ".rdb.zst"
    content = "RDB snapshot"

    def image(self, version: str) -> str:
        return f"redis:{version}"

    def container_env(self, database: str, user: str, password: str, root_password: str) -> dict[str, str]:
        return {"REDIS_PASSWORD": password}

    def container_command(self) -> list[str] | None:
        # the password reaches redis-server as config on stdin: never on a command line
        # (a here-document, so that redis-server replaces the shell and receives `docker stop`'s SIGTERM itself)
        return ["sh", "-c", "exec docker-entrypoint.sh redis-server --save 60 1 --dir /data "
                "--repl-diskless-sync-delay 0 - <<EOF\nrequirepass $REDIS_PASSWORD\nEOF\n"]

    def health_command(self, database: str, user: str) -> list[str]:
        return ["sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping | grep -q PONG']

    def url(self, host: str, port: int, user: str, password: str, database: str) -> str:
        return f"redis://:{quote(password, safe='')}@{host}:{port}/0"

    def parse_url(self, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigError(f"external_url for redis starts with {parts.scheme}://",
                              "write redis://:PASSWORD@HOST:6379/0 (rediss:// for TLS)")
        return Endpoint(host=parts.hostname or "", port=parts.port or 6379, user=_unquote(parts.username),
                        password=_unquote(parts.password), database="0", tls=parts.scheme == "rediss")

    def tool_env(self, ep: Endpoint) -> dict[str, str]:
        return {"REDISCLI_AUTH": ep.password}

    def _conn(self, ep: Endpoint) -> list[str]:
        args = ["-h", ep.host or "127.0.0.1", "-p", str(ep.port)]
        return args + (["--tls"] if ep.tls else [])

    def dump_argv(self, ep: Endpoint) -> list[str]:
        return ["redis-cli", *self._conn(ep), "--rdb", "-"]

    def cli_argv(self, ep: Endpoint, *command: str) -> list[str]:
        return ["redis-cli", *self._conn(ep), *command]

    def shell_argv(self, ep: Endpoint) -> list[str]:
        return ["redis-cli", *self._conn(ep)]


DIALECTS: dict[str, Dialect] = {"postgres": Postgres(), "mariadb": MariaDB(), "mysql": MySQL(), "redis": Redis()}


def _unquote(text: str | None) -> str:
    from urllib.parse import unquote

    return unquote(text or "")
