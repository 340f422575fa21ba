"""The `databases:` and `storage:` sections of headway.yml: managed or external databases and their backups."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from headway.config.base import Resources, Strict
from headway.config.duration import Duration
from headway.data.cron import CronError, parse_cron

EngineName = Literal["postgres", "mysql", "mariadb", "redis"]
StorageName = Literal["local", "s3"]
DEFAULT_VERSIONS: dict[str, str] = {"postgres": "15", "mysql": "8.0", "mariadb": "10.11", "redis": "7"}
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_AGE_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")


_Strict = Strict
Limits = Resources  # a managed database container's limits, as a role's `resources`


class Retention(_Strict):
    """How many backups to keep: the last N, plus the newest of each of the last days, weeks and months."""

    last: int = Field(7, ge=1, le=1000)
    daily: int = Field(7, ge=0, le=1000)
    weekly: int = Field(4, ge=0, le=1000)
    monthly: int = Field(6, ge=0, le=1000)


class BackupPolicy(_Strict):
    schedule: str | None = Field(None, description="cron syntax, run by the host's cron, e.g. '0 3 * * *'")
    retention: Retention = Retention()
    storage: list[StorageName] = Field(default_factory=lambda: ["local"])  # type: ignore[arg-type]
    encrypt_to: list[str] = Field(default_factory=list, description="age public keys (age1...)")
    verify: bool = Field(True, description="restore each scheduled backup into a throwaway container and check it")
    check: str | None = Field(None, description="SQL that must return a true first value on a verified restore")
    before_deploy: Literal["always", "never"] = "always"

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_cron(v)
            except CronError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("name at least one storage: local and/or s3")
        if len(set(v)) != len(v):
            raise ValueError("each storage once")
        return v

    @field_validator("encrypt_to")
    @classmethod
    def _recipients(cls, v: list[str]) -> list[str]:
        for r in v:
            if not _AGE_RECIPIENT.match(r):
                raise ValueError(f"{r[:12]}… is not an age public key (age1 followed by 58 characters; "
                                 "make one with `age-keygen`)")
        return v


class Pitr(_Strict):
    """Point-in-time recovery (PostgreSQL): WAL archived continuously with pgBackRest, base backups on demand."""

    enabled: bool = Field(True, description="run the database with continuous WAL archiving")
    archive_timeout: Duration = Field(60.0, description="close and archive a written WAL segment at least this "
                                                        "often (1s-300s): the most a crash can lose")
    retention_full: int = Field(2, ge=1, le=100, description="full base backups kept; decides the earliest "
                                                             "recoverable time")
    image: str | None = Field(None, description="an image that already has pgbackrest (default: built from the "
                                                "database's image)")

    @field_validator("archive_timeout")
    @classmethod
    def _timeout(cls, v: float) -> float:
        if not 1 <= v <= 300:
            raise ValueError("archive_timeout is between 1s and 300s (at most 5 minutes of writes can be lost)")
        return v


class Database(_Strict):
    """A database the app uses: a managed container per environment, or an external one by URL."""

    engine: EngineName
    version: str | None = Field(None, description="image tag; default 15 (postgres), 10.11 (mariadb), 8.0, 7")
    image: str | None = Field(None, description="image instead of the engine's official one")
    database: str | None = Field(None, description="database name; default the app name")
    user: str | None = Field(None, description="user the app connects as; default the app name")
    url_env: str | None = Field(None, description="env var the app receives; DATABASE_URL or REDIS_URL")
    external_url: str | None = Field(None, description="a database headway does not run, e.g. ${PROD_DB_URL}")
    resources: Limits | None = None
    backup: BackupPolicy = BackupPolicy()
    pitr: Pitr | None = Field(None, description="point-in-time recovery, PostgreSQL only: {enabled: true, "
                                                "archive_timeout: 60s}")

    @model_validator(mode="after")
    def _pitr(self) -> Database:
        if self.pitr is not None and self.pitr.enabled:
            if self.engine != "postgres":
                raise ValueError(f"pitr: point-in-time recovery is for PostgreSQL only, not {self.engine}; remove "
                                 "`pitr` (nightly backups still apply)")
            if self.external_url:
                raise ValueError("pitr: point-in-time recovery runs with a managed database, not an external_url; "
                                 "use your provider's point-in-time recovery")
        return self

    @field_validator("url_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError("url_env is an environment variable name such as DATABASE_URL")
        return v

    @field_validator("database", "user")
    @classmethod
    def _ident(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", v):
            raise ValueError("use lower-case letters, digits and _ (it becomes an SQL identifier)")
        return v


class DatabaseOverride(_Strict):
    """Per-environment changes to a database: any field of `databases.NAME` except its engine."""

    version: str | None = None
    image: str | None = None
    database: str | None = None
    user: str | None = None
    external_url: str | None = None
    resources: Limits | None = None
    backup: dict[str, object] | None = Field(None, description="fields of `backup` to change")
    pitr: Pitr | None = None


class LocalStorage(_Strict):
    path: str | None = Field(None, description="directory on the host; default STATE_DIR/backups")


class S3Storage(_Strict):
    bucket: str
    prefix: str = ""
    endpoint: str | None = Field(None, description="any S3-compatible endpoint URL; default AWS")
    region: str = "us-east-1"
    access_key: str | None = Field(None, description="e.g. ${S3_ACCESS_KEY} from the secrets file")
    secret_key: str | None = None


class Storage(_Strict):
    local: LocalStorage = LocalStorage()
    s3: S3Storage | None = None


def check_databases(databases: dict[str, Database], storage: Storage, taken: set[str], env_vars: set[str],
                    environments: dict[str, tuple[dict[str, DatabaseOverride], Storage | None]]) -> None:
    """Cross-checks of `databases:` against the rest of headway.yml; raises ValueError with what to change."""
    clash = set(databases) & taken
    if clash:
        raise ValueError(f"{', '.join(sorted(clash))}: a name is a role, an accessory or a database, only one")
    urls: dict[str, str] = {}
    for name, db in databases.items():
        var = url_env_of(db)
        if var in urls:
            raise ValueError(f"databases {urls[var]} and {name} both set {var}; give one of them `url_env`")
        if var in env_vars:
            raise ValueError(f"databases.{name} gives the app {var}, and `env` sets it too; remove it from `env`")
        urls[var] = name
    external: dict[str, str] = {}
    for env_name, (overrides, env_storage) in environments.items():
        for name, override in overrides.items():
            if name not in databases:
                raise ValueError(f"environments.{env_name}.databases: unknown database {name!r} "
                                 f"(databases: {', '.join(databases) or 'none'})")
            db = databases[name]
            if override.pitr is not None and override.pitr.enabled and (db.engine != "postgres" or
                                                                        override.external_url or db.external_url):
                raise ValueError(f"environments.{env_name}.databases.{name}.pitr: point-in-time recovery is for "
                                 "managed PostgreSQL databases only; remove `pitr`")
            if override.backup is not None:
                try:
                    BackupPolicy.model_validate({**databases[name].backup.model_dump(exclude_unset=True),
                                                 **override.backup})
                except ValueError as exc:
                    raise ValueError(f"environments.{env_name}.databases.{name}.backup: {exc}") from None
        for name, db in databases.items():
            url = overrides[name].external_url if name in overrides and overrides[name].external_url else \
                db.external_url
            if url:
                if url in external:
                    raise ValueError(f"environments {external[url]} and {env_name} would share the database "
                                     f"{name} ({url.split('@')[-1]}); give each environment its own external_url")
                external[url] = env_name
            extra = overrides[name].backup if name in overrides else None
            policy = db.backup if extra is None else \
                BackupPolicy.model_validate({**db.backup.model_dump(exclude_unset=True), **extra})
            if "s3" in policy.storage and (env_storage or storage).s3 is None:
                raise ValueError(f"databases.{name}.backup.storage names s3, but `storage.s3` is not configured")


def url_env_of(db: Database) -> str:
    return db.url_env or ("REDIS_URL" if db.engine == "redis" else "DATABASE_URL")
