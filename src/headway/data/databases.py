"""The databases of one app in one environment: managed containers (or external ones by URL), their URLs for the
app, and where their tools run.

A managed database is the container `APP-ENV-NAME` on the environment's network (reachable as NAME), with its data
in the volume `APP-ENV-NAME-data` and credentials generated for that environment alone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any


from headway.config.model import CommandHealth, Resources
from headway.config.resolve import Target
from headway.data.credentials import Credentials, credentials_path, load_or_create
from headway.data.engines import DIALECTS, Dialect, Endpoint
from headway.data.schema import BackupPolicy, Database, Pitr, S3Storage, url_env_of
from headway.engine import labels as L
from headway.engine.docker import Container, DockerEngine
from headway.errors import ConfigError, HealthCheckFailed, HeadwayError, NotFound
from headway.observe.health import HealthGate, HealthTarget
from headway.release.report import RecordingReporter, Reporter

if TYPE_CHECKING:
    from headway.data.pitr import PitrPostgres

KIND = "database"
SPOOL = "/run/headway-spool"


@dataclass(frozen=True)
class DatabaseSpec:
    name: str
    engine: str
    image: str
    database: str
    user: str
    url_env: str
    resources: Resources | None
    backup: BackupPolicy
    container_name: str
    volume_name: str
    external_url: str | None = field(default=None, repr=False)
    pitr: Pitr | None = None  # point-in-time recovery (managed PostgreSQL only)

    @property
    def pitr_enabled(self) -> bool:
        return self.pitr is not None and self.pitr.enabled and self.managed

    @property
    def dialect(self) -> Dialect:
        return DIALECTS[self.engine]

    @property
    def managed(self) -> bool:
        return self.external_url is None


@dataclass(frozen=True)
class StorageSpec:
    local_path: Path
    s3: S3Storage | None = field(default=None, repr=False)  # secrets filled in


def resolve_databases(target: Target) -> dict[str, DatabaseSpec]:
    config = target.config
    overrides = config.environments[target.environment].databases
    specs = {}
    for name, db in config.databases.items():
        o = overrides.get(name)
        if o is not None:
            changes = o.model_dump(exclude_unset=True, exclude={"backup"})
            if o.backup is not None:
                changes["backup"] = BackupPolicy.model_validate({**db.backup.model_dump(exclude_unset=True),
                                                                 **o.backup})
            db = Database.model_validate({**db.model_dump(exclude_unset=True), **changes})
        dialect = DIALECTS[db.engine]
        external = target._interpolate(f"databases.{name}.external_url", db.external_url) \
            if db.external_url else None
        default_name = config.app.replace("-", "_")
        resources = Resources(cpus=db.resources.cpus, memory=db.resources.memory) if db.resources else None
        specs[name] = DatabaseSpec(
            name=name, engine=db.engine, image=db.image or dialect.image(db.version or _default_version(db.engine)),
            database=db.database or default_name, user=db.user or default_name, url_env=url_env_of(db),
            resources=resources, backup=db.backup,
            container_name=L.accessory_name(target.app, target.environment, name),
            volume_name=L.volume_name(target.app, target.environment, name, "data"), external_url=external,
            pitr=db.pitr)
    return specs


def resolve_storage(target: Target, state_root: Path) -> StorageSpec:
    storage = target.config.environments[target.environment].storage or target.config.storage
    local = Path(storage.local.path) if storage.local.path else state_root / "backups"
    s3 = None
    if storage.s3 is not None:
        filled = {k: target._interpolate(f"storage.s3.{k}", v) if isinstance(v, str) else v
                  for k, v in storage.s3.model_dump().items()}
        s3 = S3Storage.model_validate(filled)
    return StorageSpec(local_path=local if local.is_absolute() else target.root / local, s3=s3)


def _default_version(engine: str) -> str:
    from headway.data.schema import DEFAULT_VERSIONS

    return DEFAULT_VERSIONS[engine]


class Databases:
    """Managed database containers of one app in one environment, and the way to run their tools."""

    def __init__(self, target: Target, engine: DockerEngine, state_root: Path,
                 reporter: Reporter | None = None) -> None:
        self.t = target
        self.engine = engine
        self.state_root = state_root
        self.report: Reporter = reporter or RecordingReporter()
        self.specs = resolve_databases(target)
        self.network = L.network_name(target.app, target.environment)

    def spec(self, name: str | None) -> DatabaseSpec:
        if not self.specs:
            raise ConfigError(f"{self.t.app} declares no databases",
                              "add a `databases:` section to headway.yml, e.g. db: {engine: postgres}")
        if name is None:
            if len(self.specs) > 1:
                raise ConfigError(f"{self.t.app} has {len(self.specs)} databases: name one",
                                  f"add one of: {', '.join(self.specs)}")
            return next(iter(self.specs.values()))
        if name not in self.specs:
            raise ConfigError(f"no database {name!r} in headway.yml", f"databases: {', '.join(self.specs)}")
        return self.specs[name]

    # -- credentials and URLs -----------------------------------------------------------------------------
    def credentials(self, spec: DatabaseSpec) -> Credentials:
        user = "default" if spec.engine == "redis" else spec.user
        path = credentials_path(self.state_root, self.t.app, self.t.environment, spec.name)
        return load_or_create(path, user, None if path.exists() else self._adopt(spec))

    def _adopt(self, spec: DatabaseSpec) -> Credentials | None:
        """The credentials a container of this name was initialised with, if one exists already."""
        container = self.container(spec) if spec.managed else None
        if container is None:
            return None
        env = dict(e.split("=", 1) for e in container.attrs["Config"].get("Env") or [] if "=" in e)
        p = "MYSQL" if spec.engine == "mysql" else "MARIADB"
        keys = {"postgres": ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_PASSWORD"),
                "redis": ("", "REDIS_PASSWORD", "REDIS_PASSWORD")}.get(
            spec.engine, (f"{p}_USER", f"{p}_PASSWORD", f"{p}_ROOT_PASSWORD"))
        if keys[1] not in env and spec.engine != "redis":
            return None
        return Credentials(user=env.get(keys[0], "postgres" if spec.engine == "postgres" else "default"),
                           password=env.get(keys[1], ""), root_password=env.get(keys[2], ""))

    def endpoint(self, spec: DatabaseSpec) -> Endpoint:
        """How tools reach the database, as its administrator (managed) or as the URL's user (external)."""
        if spec.external_url is not None:
            return spec.dialect.parse_url(spec.external_url)
        creds = self.credentials(spec)
        if spec.engine in ("mariadb", "mysql"):
            return Endpoint(host="", port=spec.dialect.port, user="root", password=creds.root_password,
                            database=spec.database)
        return Endpoint(host="", port=spec.dialect.port, user=creds.user, password=creds.password,
                        database=spec.database)

    def app_env(self) -> dict[str, str]:
        """The URL env vars app containers receive, one per database."""
        env = {}
        for spec in self.specs.values():
            if spec.external_url is not None:
                env[spec.url_env] = _with_tls_default(spec)
            else:
                creds = self.credentials(spec)
                env[spec.url_env] = spec.dialect.url(spec.name, spec.dialect.port, creds.user, creds.password,
                                                     spec.database)
        return env

    # -- containers ---------------------------------------------------------------------------------------
    def container(self, spec: DatabaseSpec) -> Container | None:
        return self.engine.get(spec.container_name)

    def containers(self) -> list[Container]:
        return self.engine.containers(L.selector(app=self.t.app, environment=self.t.environment, kind=KIND))

    def labels(self, spec: DatabaseSpec) -> dict[str, str]:
        return L.owned(KIND, app=self.t.app, environment=self.t.environment, role=spec.name)

    def pitr(self, spec: DatabaseSpec) -> PitrPostgres:
        """The database as PitrPostgres: its pgBackRest image, stanza and the data volume it serves from now."""
        from headway.data.pitr import PitrPostgres, PostgresCredentials

        if not spec.pitr_enabled or spec.pitr is None:
            raise ConfigError(f"database {spec.name} does not have point-in-time recovery",
                              f"add `pitr: {{enabled: true}}` to databases.{spec.name} in headway.yml (PostgreSQL "
                              "only), then `headway deploy`")
        creds = self.credentials(spec)
        return PitrPostgres(self.engine, self.t.app, self.t.environment, spec.name, spec.image,
                            PostgresCredentials(user=creds.user, password=creds.password, database=spec.database),
                            network=self.network, archive_timeout=int(spec.pitr.archive_timeout),
                            retention_full=spec.pitr.retention_full, pitr_image=spec.pitr.image,
                            resources=spec.resources, on_step=self.report.info)

    def _ensure_pitr(self, spec: DatabaseSpec) -> None:
        """Run the database through PitrPostgres (its image, its current data volume: a restore moved it), and take
        the first base backup."""
        pitr = self.pitr(spec)
        with self.report.step(f"{spec.name}: point-in-time recovery (WAL archiving with pgBackRest)"):
            pitr.enable()
            if not pitr.info(last_commit=False).backups:
                pitr.base_backup("full")

    def ensure(self, backup_first: Callable[[DatabaseSpec], Any] | None = None) -> None:
        """Create, start and health-check every managed database. A changed image is backed up first, then the
        container is replaced on the same volume; if the new image does not become healthy the old one returns."""
        if not self.specs:
            return
        self.engine.ensure_network(self.network, L.owned("network", app=self.t.app, environment=self.t.environment))
        pending: list[tuple[Container, DatabaseSpec]] = []
        for spec in self.specs.values():
            if not spec.managed:
                continue
            if spec.pitr_enabled:
                self._ensure_pitr(spec)
                continue
            existing = self.container(spec)
            if existing is not None and existing.attrs["Config"]["Image"] != spec.image:
                old_image = existing.attrs["Config"]["Image"]
                self.engine.require_image(spec.image, f"database {spec.name}")
                if backup_first is not None:
                    if not self.engine.state(existing).get("Running"):
                        self.engine.start(existing)
                        self._wait_healthy([(existing, spec)])
                    with self.report.step(f"back up {spec.name} before its image changes to {spec.image}"):
                        backup_first(spec)
                # the volume it serves from: after a point-in-time restore (pitr switched off since) not the first one
                volume = _mounted(existing, spec.dialect.data_path) or spec.volume_name
                with self.report.step(f"replace {spec.name}: {old_image} → {spec.image} (volume kept)"):
                    self.engine.stop(existing, 60)
                    self.engine.remove(existing)
                    container = self._create(spec, spec.image, volume)
                    self.engine.start(container)
                    try:
                        self._wait_healthy([(container, spec)])
                    except HeadwayError as exc:
                        self.engine.remove(container)
                        back = self._create(spec, old_image, volume)
                        self.engine.start(back)
                        raise HeadwayError(f"database {spec.name} did not start on {spec.image}; {old_image} is "
                                           "back on the same volume", "an upgrade across major versions needs "
                                           "dump and restore: start a new database and `headway db restore` "
                                           "the backup just taken", details=exc.details) from None
                continue
            if existing is not None:
                if not self.engine.state(existing).get("Running"):
                    self.engine.start(existing)
                    pending.append((existing, spec))
                continue
            self.engine.require_image(spec.image, f"database {spec.name}")
            container = self._create(spec, spec.image)
            self.engine.start(container)
            pending.append((container, spec))
        self._wait_healthy(pending)

    def _create(self, spec: DatabaseSpec, image: str, volume: str | None = None) -> Container:
        creds = self.credentials(spec)
        volume = volume or spec.volume_name
        self.engine.ensure_volume(volume, L.owned("volume", app=self.t.app, environment=self.t.environment,
                                                  role=spec.name))
        return self.engine.create(
            name=spec.container_name, image=image, command=spec.dialect.container_command(),
            env=spec.dialect.container_env(spec.database, creds.user, creds.password, creds.root_password),
            labels=self.labels(spec), network=self.network, aliases=[spec.name], resources=spec.resources,
            volumes={volume: {"bind": spec.dialect.data_path, "mode": "rw"},
                     str(self.spool_dir(spec)): {"bind": SPOOL, "mode": "rw"}})

    def spool_dir(self, spec: DatabaseSpec) -> Path:
        """A host directory shared with the database container: dumps leave it through a FIFO in here."""
        path = self.state_root / "spool" / spec.container_name
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def shared_spool(self, container: Container) -> str | None:
        """The host side of the container's spool directory, if it has one (containers made before do not)."""
        for mount in container.attrs.get("Mounts") or []:
            if mount.get("Destination") == SPOOL and mount.get("Type") == "bind" and Path(mount["Source"]).is_dir():
                return str(mount["Source"])
        return None

    def _wait_healthy(self, pending: list[tuple[Container, DatabaseSpec]], deadline: float = 120.0) -> None:
        targets = [HealthTarget(container=c, role=s.name, network=self.network, port=None,
                                health=CommandHealth(command=s.dialect.health_command(s.database, s.user),
                                                     interval=0.25, attempts=480, timeout=5))
                   for c, s in pending]
        failed = [r for r in HealthGate(self.engine).wait_all(targets, deadline) if not r.healthy]
        if failed:
            names = {r.container for r in failed}
            logs = "\n".join(f"--- {c.name} ---\n{self.engine.last_lines(c, 20)}" for c, _ in pending
                             if c.name in names)
            raise HealthCheckFailed(f"database {failed[0].role} is not healthy: {failed[0].reason}",
                                    "check its image and resources in headway.yml; its log is above",
                                    details=logs)

    def require_running(self, spec: DatabaseSpec) -> Container:
        container = self.container(spec)
        if container is None:
            raise NotFound(f"database {spec.name} of {self.t.app}/{self.t.environment} does not exist yet",
                           f"run `headway deploy -e {self.t.environment}` (it creates the databases)")
        if not self.engine.state(container).get("Running"):
            self.engine.start(container)
            self._wait_healthy([(container, spec)])
        return container

    @contextmanager
    def tools(self, spec: DatabaseSpec) -> Iterator[str]:
        """A container where the engine's own tools can reach the database: the managed container itself, or a
        throwaway one of the engine's image on the environment's network for an external database."""
        if spec.managed:
            yield self.require_running(spec).id or ""
            return
        self.engine.ensure_network(self.network, L.owned("network", app=self.t.app, environment=self.t.environment))
        self.engine.require_image(spec.image, f"database {spec.name}")
        helper = self.engine.create(
            name=f"{spec.container_name}-tools-{uuid.uuid4().hex[:6]}", image=spec.image,
            command=["sleep", "infinity"], env={},
            labels=L.owned("oneoff", app=self.t.app, environment=self.t.environment, role=spec.name),
            network=self.network, restart=False)
        try:
            self.engine.start(helper)
            yield helper.id or ""
        finally:
            self.engine.remove(helper)

    def run_sql(self, dialect: Dialect, container_id: str, sql: str, database: str, ep: Endpoint) -> list[list[str]]:
        """Rows of a query, run with the engine's own client; an error names the database, never a password."""
        from headway.engine import exec_stream  # the docker SDK loads when a database is first queried

        code, out, err = exec_stream.run(self.engine.client, container_id, dialect.sql_argv(ep, database, sql),
                                         env=dialect.tool_env(ep))
        if code != 0:
            raise HeadwayError(f"{dialect.engine} query on database {database} failed (exit {code})",
                               "see the database's message above", details=_scrub(err, ep))
        return [line.split("\t") for line in out.splitlines() if line.strip()]

    # -- day two ----------------------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        out = []
        for spec in self.specs.values():
            row: dict[str, Any] = {"name": spec.name, "engine": spec.engine, "image": spec.image,
                                   "url_env": spec.url_env, "managed": spec.managed, "state": "external",
                                   "volume": spec.volume_name if spec.managed else None, "started_at": ""}
            if spec.managed:
                c = self.container(spec)
                if c is None:
                    row["state"] = "not created"
                else:
                    st = self.engine.state(c)
                    row["state"] = st.get("Status", "?")
                    row["image"] = c.attrs["Config"]["Image"]
                    row["started_at"] = (st.get("StartedAt") or "")[:19].replace("T", " ")
            out.append(row)
        return out

    def logs(self, spec: DatabaseSpec, *, follow: bool = False, tail: int = 100,
             since: float | None = None) -> Iterator[str]:
        if not spec.managed:
            raise HeadwayError(f"database {spec.name} is external: its logs are with its provider",
                               "see your database provider's console")
        container = self.container(spec)
        if container is None:
            raise NotFound(f"database {spec.name} does not exist yet", f"run `headway deploy -e {self.t.environment}`")
        yield from self.engine.logs(container, tail=tail, follow=follow, since=since)

    def shell_command(self, spec: DatabaseSpec) -> tuple[str, list[str], dict[str, str]]:
        """What `headway db shell` runs: (container, argv, env) for an interactive `docker exec -it`."""
        if not spec.managed:
            raise HeadwayError(f"database {spec.name} is external", "connect with your provider's client")
        container = self.require_running(spec)
        ep = self.endpoint(spec)
        if spec.engine in ("mariadb", "mysql"):
            creds = self.credentials(spec)
            ep = Endpoint(host="", port=ep.port, user=creds.user, password=creds.password, database=spec.database)
        return container.name or "", spec.dialect.shell_argv(ep), spec.dialect.tool_env(ep)


def _mounted(container: Container, path: str) -> str | None:
    """The named volume mounted at `path` in the container."""
    for mount in container.attrs.get("Mounts") or []:
        if mount.get("Destination") == path and mount.get("Type") == "volume":
            return str(mount.get("Name"))
    return None


def _with_tls_default(spec: DatabaseSpec) -> str:
    url = spec.external_url or ""
    if spec.engine == "postgres" and "sslmode=" not in url:
        return url + ("&" if "?" in url else "?") + "sslmode=require"
    return url


def _scrub(text: str, ep: Endpoint) -> str:
    return text.replace(ep.password, "***") if ep.password else text


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise HeadwayError(f"{what} did not happen within {timeout:.0f}s", "see the database's log")
        time.sleep(interval)  # polling a condition with a deadline
