"""Fixtures for the database tests (imported by tests/integration/test_db_*.py): apps with real PostgreSQL,
MariaDB and Redis containers, and a real S3-compatible server (moto in server mode, over HTTP)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import FIXTURES, _cleanup_app, free_port

from headway.engine import exec_stream
from headway.data.backup import BackupService
from headway.engine.docker import DockerEngine
from headway.service import Headway


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def bucket(self) -> str:
        import boto3

        name = f"b{uuid.uuid4().hex[:10]}"
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="test",
                     aws_secret_access_key="test").create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield S3Server(f"http://127.0.0.1:{port}")
    server.stop()


@dataclass
class DbApp:
    """An app copied from the tiny fixture, with a `databases:` section, its own name and state."""

    root: Path
    name: str
    state_dir: Path
    ports: dict[str, int]

    def headway(self, environment: str = "production") -> Headway:
        return Headway.open(environment, config=self.root / "headway.yml", state_dir=self.state_dir)

    def service(self, environment: str = "production") -> BackupService:
        return self.headway(environment).databases()

    def write_config(self, databases: str, storage: str = "", extra: str = "") -> None:
        ports = self.ports
        (self.root / "headway.yml").write_text(
            f"app: {self.name}\n"
            "roles:\n"
            "  web: {command: python app.py serve, port: 8000, replicas: 1, health: {path: /health, interval: 200ms}}\n"
            "release: python app.py release\n"
            "deploy: {drain_timeout: 2s, health_deadline: 30s}\n"
            f"databases:\n{databases}\n"
            f"{storage}\n{extra}\n"
            "environments:\n"
            f"  production: {{port: {ports['production']}}}\n"
            f"  staging: {{port: {ports['staging']}}}\n")

    def exec(self, environment: str, database: str, argv: list[str], stdin: bytes | None = None) -> str:
        svc = self.service(environment)
        container = svc.dbs.container(svc.dbs.spec(database))
        assert container is not None
        code, out, err = exec_stream.run(svc.engine.client, container.id or "", argv, input=stdin)
        assert code == 0, err
        return out

    def psql(self, sql: str, environment: str = "production", database: str = "db") -> str:
        return self.exec(environment, database, ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                                 "-U", self.name, "-d", self.name, "-c", sql])

    def pg_checksums(self, environment: str = "production", database: str = "db") -> dict[str, str]:
        """A content checksum of every table: what must survive backup → restore unchanged."""
        tables = self.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
                           environment, database).split()
        return {t: self.psql(f"SELECT count(*) || ':' || md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))"
                             f" FROM {t} x", environment, database).strip() for t in tables}

    def mariadb(self, sql: str, environment: str = "production", database: str = "maria") -> str:
        return self.exec(environment, database, ["mariadb", "-uroot", "-N", "-B", self.name, "-e", sql])

    def redis(self, *args: str, environment: str = "production", database: str = "cache") -> str:
        return self.exec(environment, database, ["sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli "$@"', "sh",
                                                 *args])


@pytest.fixture
def db_app(tmp_path: Path, docker_engine: DockerEngine) -> Iterator[Callable[..., DbApp]]:
    """A factory: db_app(databases_yaml, storage_yaml="") → a DbApp; everything it created is removed afterwards."""
    made: list[DbApp] = []

    def make(databases: str, storage: str = "", extra: str = "", state_dir: Path | None = None) -> DbApp:
        name = f"d{uuid.uuid4().hex[:7]}"
        root = tmp_path / name
        shutil.copytree(FIXTURES / "apps" / "tiny", root)
        app = DbApp(root, name, state_dir or tmp_path / f"{name}-state",
                    {"production": free_port(), "staging": free_port()})
        app.write_config(databases, storage, extra)
        made.append(app)
        return app

    yield make
    for app in made:
        _cleanup_app(docker_engine, app.name)
        proxy = Headway.proxy_only(app.state_dir)
        for env in app.ports:
            if proxy.routes.get(app.name, env) is not None:
                proxy.drop_route(app.name, env)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a local backup directory that fills up."""
    path = tmp_path / "small-disk"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)], check=True)
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)
