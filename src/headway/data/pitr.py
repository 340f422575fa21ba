"""Point-in-time recovery for PostgreSQL with pgBackRest.

The database container runs an image derived from the configured postgres image with pgBackRest added (built once
per base image, cached by tag). WAL is archived continuously into the repository volume `APP-ENV-NAME-pitr`
(optionally also to S3), `archive_timeout` closes a segment at least once a minute, and base backups are taken on
demand. A restore never touches live data: it goes into a new data volume, is recovered and checked in a separate
container, and only then replaces the live database; the previous data volume is kept until the next successful
restore.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal


from headway.config.model import Resources
from headway.engine import labels as L
from headway.engine.container_io import ExecResult, exec_split, put_file
from headway.engine.docker import Container, DockerEngine
from headway.errors import BuildFailed, ExitCode, HeadwayError, NotFound

STANZA = f"{L.PREFIX}.pitr.stanza"  # on the database container, its volumes and the derived image
DATA_VOLUME = f"{L.PREFIX}.pitr.data-volume"  # the volume the container serves from
PREVIOUS_VOLUME = f"{L.PREFIX}.pitr.previous-volume"  # what served before the last restore, kept until the next
RESTORED_TO = f"{L.PREFIX}.pitr.restored-to"
BASE_IMAGE = f"{L.PREFIX}.pitr.base-image"

PGDATA = "/var/lib/postgresql/data"
REPO_PATH = "/var/lib/pgbackrest"
CONFIG_DIR = "/etc/pgbackrest"
SOCKET_DIR = "/var/run/postgresql"
PGBACKREST_PACKAGE = "pgbackrest"  # Debian bookworm: 2.45
DEFAULT_ARCHIVE_TIMEOUT = 60  # seconds: a segment is closed and archived at least this often while there is work
WAL_SEARCH_SEGMENTS = 32  # how far back to look for the newest transaction in the archive
BackupKind = Literal["full", "diff", "incr"]
Step = Callable[[str], None]

# Newest first: fetch each archived segment (decompressing by its extension), print its last COMMIT/ABORT record.
_NEWEST_COMMIT_SCRIPT = r"""
set -u
d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
stanza=$1; shift
for item in "$@"; do
    seg=${item%%|*}; path=${item#*|}
    case "$path" in
        *.lz4) unpack="lz4 -dc" ;;
        *.gz) unpack="gzip -dc" ;;
        *.zst) unpack="zstd -dcq" ;;
        *.bz2) unpack="bzip2 -dc" ;;
        *) unpack=cat ;;
    esac
    { pgbackrest --stanza="$stanza" repo-get "$path" 2>"$d/err"; echo $? >"$d/rc"; } | $unpack >"$d/$seg"
    if [ "$(cat "$d/rc")" != 0 ]; then
        echo "hw-error $(head -c 300 "$d/err")"
        exit 0
    fi
    line=$(pg_waldump "$d/$seg" 2>/dev/null | grep -E "desc: (COMMIT|ABORT)" | tail -n 1)
    if [ -n "$line" ]; then
        echo "hw-commit $seg $line"
        exit 0
    fi
    rm -f "$d/$seg"
done
echo hw-none
"""
_COMMIT = re.compile(r"desc: (?:COMMIT|ABORT)(?:_PREPARED \d+:)? (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")
_SEGMENT = re.compile(r"^[0-9A-F]{24}$")


# -- settings, as plain data ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PostgresCredentials:
    user: str
    password: str = field(repr=False)
    database: str


@dataclass(frozen=True)
class S3Repository:
    """A second repository in S3 (or any S3-compatible store). Keys reach pgBackRest by env, never a file or argv."""

    bucket: str
    endpoint: str
    region: str
    key: str = field(repr=False)
    key_secret: str = field(repr=False)
    path: str = "/headway"
    uri_style: Literal["host", "path"] = "host"
    verify_tls: bool = True
    retention_full: int = 4

    def config_lines(self, index: int = 2) -> list[str]:
        r = f"repo{index}"
        return [f"{r}-type=s3", f"{r}-path={self.path}", f"{r}-s3-bucket={self.bucket}",
                f"{r}-s3-endpoint={self.endpoint}", f"{r}-s3-region={self.region}",
                f"{r}-s3-uri-style={self.uri_style}", f"{r}-storage-verify-tls={'y' if self.verify_tls else 'n'}",
                f"{r}-retention-full={self.retention_full}"]

    def env(self, index: int = 2) -> dict[str, str]:
        return {f"PGBACKREST_REPO{index}_S3_KEY": self.key, f"PGBACKREST_REPO{index}_S3_KEY_SECRET": self.key_secret}


def stanza_name(app: str, environment: str, name: str) -> str:
    return f"{app}-{environment}-{name}"


def repo_volume_name(app: str, environment: str, name: str) -> str:
    return L.volume_name(app, environment, name, "pitr")


def render_config(stanza: str, credentials: PostgresCredentials, *, retention_full: int = 2,
                  s3: S3Repository | None = None, process_max: int = 2) -> str:
    """pgbackrest.conf: the local repository on its volume, optionally S3 as repo2, one stanza for this database."""
    lines = ["# written by headway: point-in-time recovery for this database", "[global]",
             f"repo1-path={REPO_PATH}", f"repo1-retention-full={retention_full}"]
    if s3 is not None:
        lines += s3.config_lines(2)
        # a slow or unreachable bucket must not hold up WAL for the local repository
        lines += ["archive-async=y", "spool-path=/var/spool/pgbackrest"]
    lines += ["start-fast=y", "compress-type=lz4", f"process-max={process_max}", "log-level-console=warn",
              "log-level-stderr=warn", "log-level-file=off", "", f"[{stanza}]", f"pg1-path={PGDATA}",
              f"pg1-socket-path={SOCKET_DIR}", "pg1-port=5432", f"pg1-user={credentials.user}",
              f"pg1-database={credentials.database}", ""]
    return "\n".join(lines)


def postgres_settings(stanza: str, archive_timeout: int = DEFAULT_ARCHIVE_TIMEOUT) -> dict[str, str]:
    """Continuous archiving: every WAL segment goes to pgBackRest; an idle-but-written segment closes in time."""
    return {"wal_level": "replica", "archive_mode": "on",
            "archive_command": f"pgbackrest --stanza={stanza} archive-push %p",
            "archive_timeout": str(archive_timeout), "max_wal_senders": "3"}


def postgres_command(settings: Mapping[str, str]) -> list[str]:
    argv = ["postgres"]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    return argv


def dockerfile(base_image: str) -> str:
    return (f"FROM {base_image}\n"
            "USER root\n"
            "RUN set -eux; \\\n"
            "    apt-get update; \\\n"
            f"    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {PGBACKREST_PACKAGE} "
            "ca-certificates lz4 zstd; \\\n"
            "    rm -rf /var/lib/apt/lists/*; \\\n"
            "    rm -f /etc/pgbackrest.conf; \\\n"
            f"    install -d -o postgres -g postgres -m 0750 {REPO_PATH} /var/log/pgbackrest "
            "/var/spool/pgbackrest; \\\n"
            f"    install -d -m 0755 {CONFIG_DIR}; \\\n"
            "    pgbackrest version\n")


def derived_image_tag(base_image: str, base_image_id: str) -> str:
    """`headway-pitr/REPO:TAG-HASH`: a new base image or recipe gives a new tag, so a stale build is never used."""
    ref = base_image.split("@", 1)[0]
    name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
    repo = re.sub(r"[^a-z0-9._-]", "-", name.rsplit("/", 1)[-1].lower()) or "postgres"
    digest = hashlib.sha256(f"{base_image_id}\n{dockerfile(base_image)}".encode()).hexdigest()[:12]
    return f"headway-pitr/{repo}:{re.sub(r'[^A-Za-z0-9_.-]', '-', tag)[:100]}-{digest}"


def pg_timestamp(when: datetime) -> str:
    """A timestamp both PostgreSQL (recovery_target_time) and pgBackRest (backup set selection) read."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def _show(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_commit_time(line: str) -> datetime | None:
    """The time of a COMMIT/ABORT record in pg_waldump output (run with TZ=UTC)."""
    m = _COMMIT.search(line)
    if m is None:
        return None
    text = m.group(1)
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


# -- what pgBackRest knows ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Backup:
    label: str
    kind: str  # full | diff | incr
    started: datetime
    stopped: datetime
    size: int  # database size
    repo_size: int  # what it takes in the repository
    wal_start: str
    wal_stop: str


@dataclass(frozen=True)
class PitrInfo:
    stanza: str
    backups: tuple[Backup, ...]
    wal_min: str | None
    wal_max: str | None
    archived_at: datetime | None  # when the newest WAL segment reached the repository
    last_commit: datetime | None  # the newest transaction in the archived WAL
    last_commit_segment: str | None = None  # the WAL segment it is in

    @property
    def earliest(self) -> datetime | None:
        """The earliest recoverable time: just after the oldest backup became consistent."""
        if not self.backups:
            return None
        return min(b.stopped for b in self.backups) + timedelta(seconds=1)

    @property
    def latest(self) -> datetime | None:
        """The latest recoverable time: the newest transaction in the archive (or just after the newest backup)."""
        if not self.backups:
            return None
        after_backup = max(b.stopped for b in self.backups) + timedelta(seconds=1)
        return max(self.last_commit, after_backup) if self.last_commit else after_backup


def parse_info(text: str, stanza: str) -> tuple[tuple[Backup, ...], str | None, str | None]:
    """Backups and the archived WAL range from `pgbackrest info --output=json`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise HeadwayError("pgbackrest info did not return JSON", "see its output below", details=text[-2000:]) \
            from None
    entry = next((s for s in data if s.get("name") == stanza), None)
    if entry is None:
        return (), None, None
    backups = tuple(Backup(
        label=b["label"], kind=b["type"],
        started=datetime.fromtimestamp(b["timestamp"]["start"], UTC),
        stopped=datetime.fromtimestamp(b["timestamp"]["stop"], UTC),
        size=int(b.get("info", {}).get("size", 0)),
        repo_size=int(b.get("info", {}).get("repository", {}).get("size", 0)),
        wal_start=(b.get("archive") or {}).get("start") or "", wal_stop=(b.get("archive") or {}).get("stop") or "")
        for b in entry.get("backup", []) if not b.get("error"))
    archives = [a for a in entry.get("archive", []) if a.get("max")]
    wal_min = min((a["min"] for a in archives), default=None)
    wal_max = max((a["max"] for a in archives), default=None)
    return backups, wal_min, wal_max


@dataclass(frozen=True)
class RestorePlan:
    """How a restore reaches the requested time: recover to it, or replay the whole archive when it is later than
    the last transaction archived (and the archive is known complete up to it)."""

    method: Literal["time", "end-of-archive"]
    target: datetime | None


def plan_restore(info: PitrInfo, when: datetime | None, *, complete_until: datetime | None = None,
                 now: datetime | None = None) -> RestorePlan:
    """Check a target against what the repository can recover; `when=None` is the latest state archived."""
    if not info.backups:
        raise NotFound(f"no base backup of {info.stanza} yet: nothing to recover from",
                       "take one first (a full base backup), then continue archiving")
    earliest, latest = info.earliest, info.latest
    assert earliest is not None and latest is not None
    if complete_until is not None:
        latest = max(latest, complete_until)
    if when is None:
        return RestorePlan("end-of-archive", None)
    if when.tzinfo is None:
        raise HeadwayError(f"restore target {when} has no time zone", "give one, e.g. 2026-11-21 14:05:00+00",
                           exit_code=ExitCode.USAGE)
    if when > (now or datetime.now(UTC)):
        raise HeadwayError(f"restore target {_show(when)} is in the future", "give a time in the past",
                           exit_code=ExitCode.USAGE)
    if when < earliest:
        raise HeadwayError(f"{_show(when)} is before the earliest recoverable time {_show(earliest)} (the oldest "
                           "base backup kept)", f"restore to {_show(earliest)} or later; recoverable: "
                           f"{_show(earliest)} … {_show(latest)}", exit_code=ExitCode.USAGE)
    if when > latest:
        raise HeadwayError(f"{_show(when)} is after the latest recoverable time {_show(latest)}: WAL after that is not "
                           "in the archive", f"restore to {_show(latest)} or earlier; recoverable: {_show(earliest)} … "
                           f"{_show(latest)}", exit_code=ExitCode.USAGE)
    # PostgreSQL stops *before* the first commit later than the target, so one must exist in the archive
    if info.last_commit is not None and when < info.last_commit:
        return RestorePlan("time", when)
    return RestorePlan("end-of-archive", when)


@dataclass(frozen=True)
class RestoreResult:
    target: datetime | None
    method: str  # time | end-of-archive
    recovered_to: datetime | None  # the last transaction replayed
    backup_set: str  # the base backup recovery started from
    data_volume: str  # serving now
    previous_volume: str  # what served before, kept until the next successful restore
    seconds: float  # from the start of the restore until the restored database served
    downtime_seconds: float  # from stopping the old server until the restored one served
    backup: Backup | None = None  # the full backup taken right after, on the new timeline
    warnings: tuple[str, ...] = ()


# -- the database ---------------------------------------------------------------------------------------------
class PitrPostgres:
    """One PostgreSQL database of an app in an environment, with continuous WAL archiving and PITR."""

    def __init__(self, engine: DockerEngine, app: str, environment: str, name: str, image: str,
                 credentials: PostgresCredentials, *, env: Mapping[str, str] | None = None, kind: str = "database",
                 network: str | None = None, archive_timeout: int = DEFAULT_ARCHIVE_TIMEOUT,
                 retention_full: int = 2, s3: S3Repository | None = None, pitr_image: str | None = None,
                 resources: Resources | None = None, on_step: Step | None = None) -> None:
        if not 1 <= archive_timeout <= 300:
            raise HeadwayError(f"archive_timeout {archive_timeout}s is outside 1…300s",
                               "keep it at most 300s so at most 5 minutes of writes can be lost",
                               exit_code=ExitCode.USAGE)
        self.engine = engine
        self.app, self.environment, self.name = app, environment, name
        self.image = image
        self.credentials = credentials
        self.kind = kind
        self.network = network or L.network_name(app, environment)
        self.archive_timeout = archive_timeout
        self.retention_full = retention_full
        self.s3 = s3
        self.resources = resources
        self._pitr_image = pitr_image
        self._env = dict(env) if env is not None else {
            "POSTGRES_USER": credentials.user, "POSTGRES_PASSWORD": credentials.password,
            "POSTGRES_DB": credentials.database}
        self._step = on_step or (lambda _msg: None)

    # -- names ----------------------------------------------------------------------------------------------
    @property
    def stanza(self) -> str:
        return stanza_name(self.app, self.environment, self.name)

    @property
    def container_name(self) -> str:
        return L.accessory_name(self.app, self.environment, self.name)

    @property
    def repo_volume(self) -> str:
        return repo_volume_name(self.app, self.environment, self.name)

    @property
    def canonical_volume(self) -> str:
        return L.volume_name(self.app, self.environment, self.name, "data")

    def config_text(self) -> str:
        return render_config(self.stanza, self.credentials, retention_full=self.retention_full, s3=self.s3)

    def settings(self) -> dict[str, str]:
        return postgres_settings(self.stanza, self.archive_timeout)

    def _labels(self, kind: str | None = None) -> dict[str, str]:
        labels = L.owned(kind or self.kind, app=self.app, environment=self.environment, role=self.name)
        labels[STANZA] = self.stanza
        return labels

    def _tool_env(self) -> dict[str, str]:
        env = {"PGPASSWORD": self.credentials.password, "TZ": "UTC"}
        if self.s3 is not None:
            env.update(self.s3.env())
        return env

    # -- the image ----------------------------------------------------------------------------------------
    def ensure_image(self) -> str:
        """The postgres image with pgBackRest: built on first use from the configured image, then reused."""
        if self._pitr_image is not None:
            self.engine.require_image(self._pitr_image, f"database {self.name} (PITR image)")
            return self._pitr_image
        self.engine.require_image(self.image, f"database {self.name}")
        base_id = self.engine.image_id(self.image)
        tag = derived_image_tag(self.image, base_id)
        if self.engine.image_exists(tag):
            return tag
        self._step(f"build {tag}: {self.image} with pgBackRest")
        with tempfile.TemporaryDirectory(prefix="headway-pitr-") as tmp:
            (Path(tmp) / "Dockerfile").write_text(dockerfile(self.image))
            labels = {L.MANAGED: "true", L.KIND: "image", BASE_IMAGE: self.image}
            try:
                self.engine.build(context=Path(tmp), dockerfile="Dockerfile", tag=tag, args={}, target=None,
                                  labels=labels)
            except BuildFailed as exc:
                raise BuildFailed(f"could not add pgBackRest to {self.image}: {exc.message}",
                                  "the build runs `apt-get install pgbackrest`: the Debian mirror must be reachable "
                                  "from `docker build`, or give an image that already has pgbackrest (pitr_image)",
                                  details=exc.details) from None
        return tag

    # -- volumes --------------------------------------------------------------------------------------------
    def data_volume(self) -> str:
        """The volume the database serves from: the container's, else the newest restored one, else the first."""
        container = self.engine.get(self.container_name)
        if container is not None:
            mounted = _mount_of(container, PGDATA)
            if mounted:
                return mounted
        mine = self.engine.volumes(L.selector(app=self.app, environment=self.environment, role=self.name))
        restored = [v for v in mine if v.name.startswith(f"{self.canonical_volume}-r")
                    and (v.attrs.get("Labels") or {}).get(RESTORED_TO)]
        if restored:
            return str(max(restored, key=lambda v: v.attrs.get("CreatedAt", "")).name)
        return self.canonical_volume

    # -- the server -----------------------------------------------------------------------------------------
    def enable(self, *, timeout: float = 180) -> None:
        """Run the database with continuous archiving: (re)create its container on the same data volume with the
        pgBackRest image and settings, create the stanza, and check that a WAL segment reaches the repository."""
        image = self.ensure_image()
        self.engine.ensure_network(self.network, L.owned("network", app=self.app, environment=self.environment))
        self.engine.ensure_volume(self.repo_volume, self._labels("volume"))
        existing = self.engine.get(self.container_name)
        volume = self.data_volume()
        if existing is not None and self._configured(existing, image):
            if not self.engine.state(existing).get("Running"):
                self.engine.start(existing)
            self._put_config(existing)
            self._wait_serving(existing, timeout)
            container = existing
        else:
            previous = existing.labels.get(PREVIOUS_VOLUME) if existing is not None else None
            if existing is not None:
                self._step(f"restart {self.container_name} with WAL archiving (data volume {volume} kept)")
            container = self._replace_server(existing, lambda: self._create_server(image, volume, previous=previous),
                                             timeout)
        self._step(f"pgBackRest stanza {self.stanza}")
        self._pgbackrest(container, ["stanza-create"], timeout=timeout)
        self._pgbackrest(container, ["check"], timeout=timeout + self.archive_timeout)

    def _replace_server(self, old: Container | None, create: Callable[[], Container], timeout: float, *,
                        restart_old: bool | None = None) -> Container:
        """Start a new database container in place of `old`, which steps aside (stopped, renamed) and comes back
        as it was if the new one does not serve."""
        was_running = bool(old is not None and self.engine.state(old).get("Running")) if restart_old is None \
            else restart_old
        if old is not None:
            self.engine.stop(old, 60)
            old.rename(f"{self.container_name}-replaced-{uuid.uuid4().hex[:6]}")
        new: Container | None = None
        try:
            new = create()
            self.engine.start(new)
            self._wait_serving(new, timeout)
        except BaseException:
            if new is not None:
                self.engine.remove(new)
            if old is not None:
                old.rename(self.container_name)
                if was_running:
                    self.engine.start(old)
            raise
        if old is not None:
            self.engine.remove(old)  # its volumes stay
        return new

    def _configured(self, container: Container, image: str) -> bool:
        cmd = container.attrs.get("Config", {}).get("Cmd") or []
        return (container.labels.get(STANZA) == self.stanza and container.attrs.get("Config", {}).get("Image") == image
                and list(cmd) == postgres_command(self.settings()))

    def _create_server(self, image: str, volume: str, *, previous: str | None = None,
                       restored_to: str | None = None) -> Container:
        self.engine.ensure_volume(volume, self._labels("volume"))
        labels = {**self._labels(), DATA_VOLUME: volume}
        if previous:
            labels[PREVIOUS_VOLUME] = previous
        if restored_to:
            labels[RESTORED_TO] = restored_to
        container = self.engine.create(
            name=self.container_name, image=image, command=postgres_command(self.settings()), env=self._server_env(),
            labels=labels, network=self.network, aliases=[self.name], resources=self.resources,
            volumes={volume: {"bind": PGDATA, "mode": "rw"}, self.repo_volume: {"bind": REPO_PATH, "mode": "rw"}})
        self._put_config(container)
        return container

    def _server_env(self) -> dict[str, str]:
        env = dict(self._env)
        if self.s3 is not None:
            env.update(self.s3.env())  # archive-push runs as a child of the server
        return env

    def _put_config(self, container: Container) -> None:
        _put_file(container, f"{CONFIG_DIR}/pgbackrest.conf", self.config_text().encode(), mode=0o644)

    def _wait_serving(self, container: Container, timeout: float, *, promoted: bool = True) -> None:
        """Poll until the server accepts TCP connections (not the entrypoint's socket-only initdb server) and, with
        `promoted`, has left recovery."""
        deadline = time.monotonic() + timeout
        query = ["psql", "-X", "-At", "-U", self.credentials.user, "-d", self.credentials.database, "-c",
                 "select pg_is_in_recovery()"]
        while True:
            state = self.engine.state(container)
            if not state.get("Running"):
                raise HeadwayError(f"{container.name} exited (code {state.get('ExitCode')}) before it served",
                                   "see its log below", details=self.engine.last_lines(container, 30))
            ready = _exec(container, ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], timeout=15)
            if ready.exit_code == 0:
                answer = _exec(container, query, env=self._tool_env(), timeout=15)
                if answer.exit_code == 0 and (not promoted or answer.stdout.strip() == "f"):
                    return
            if time.monotonic() > deadline:
                raise HeadwayError(f"{container.name} did not serve within {timeout:.0f}s",
                                   "see its log below", details=self.engine.last_lines(container, 30))
            time.sleep(0.2)  # polling a condition with a deadline

    def _running_server(self) -> Container | None:
        container = self.engine.get(self.container_name)
        if container is not None and self.engine.state(container).get("Running") \
                and container.labels.get(STANZA) == self.stanza:
            return container
        return None

    # -- pgBackRest ---------------------------------------------------------------------------------------
    def _pgbackrest(self, container: Container, args: list[str], *, timeout: float) -> str:
        argv = ["pgbackrest", f"--stanza={self.stanza}", *args]
        result = _exec(container, argv, env=self._tool_env(), user="postgres", timeout=timeout)
        if result.timed_out:
            raise HeadwayError(f"pgbackrest {args[-1]} did not finish within {timeout:.0f}s",
                               "retry with a longer timeout; see `headway db logs`")
        if result.exit_code != 0:
            lines = [ln for ln in (result.stderr + result.stdout).splitlines() if "ERROR" in ln or "WARN" in ln]
            raise HeadwayError(f"pgbackrest {args[-1]} failed for {self.stanza}: "
                               + (lines[0].split(": ", 1)[-1] if lines else f"exit code {result.exit_code}"),
                               "see pgBackRest's output below", details=(result.stderr + result.stdout)[-4000:])
        return result.stdout

    @contextmanager
    def _tools(self, extra_volumes: Mapping[str, str] | None = None) -> Iterator[Container]:
        """Where pgBackRest runs: the live server, or (when it is down, or to restore) a throwaway container of the
        same image with the repository volume."""
        server = self._running_server() if not extra_volumes else None
        if server is not None:
            yield server
            return
        image = self.ensure_image()
        self.engine.ensure_volume(self.repo_volume, self._labels("volume"))
        volumes = {self.repo_volume: {"bind": REPO_PATH, "mode": "rw"}}
        for volume, path in (extra_volumes or {}).items():
            volumes[volume] = {"bind": path, "mode": "rw"}
        helper = self.engine.create(
            name=f"{self.container_name}-pitr-tools-{uuid.uuid4().hex[:6]}", image=image,
            command=["sleep", "infinity"], env={"TZ": "UTC"}, labels=self._labels("oneoff"), network=None,
            volumes=volumes, restart=False)
        try:
            self._put_config(helper)
            self.engine.start(helper)
            yield helper
        finally:
            self.engine.remove(helper)

    def base_backup(self, kind: BackupKind = "full", *, repo: int = 1, timeout: float = 6 * 3600) -> Backup:
        """A base backup of the running database (full, or diff/incr on top of the last full)."""
        if kind not in ("full", "diff", "incr"):
            raise HeadwayError(f"unknown backup kind {kind!r}", "use full, diff or incr", exit_code=ExitCode.USAGE)
        server = self._running_server()
        if server is None:
            raise HeadwayError(f"{self.container_name} is not running with WAL archiving",
                               "enable point-in-time recovery first (it starts the database)")
        self._step(f"{kind} base backup of {self.stanza}")
        self._pgbackrest(server, [f"--type={kind}", f"--repo={repo}", "backup"], timeout=timeout)
        backups = self.info(last_commit=False).backups
        if not backups:
            raise HeadwayError("the backup finished but pgbackrest info lists none", "run pgbackrest info")
        return max(backups, key=lambda b: b.stopped)

    def info(self, *, last_commit: bool = True) -> PitrInfo:
        """Backups, the archived WAL range, and the recoverable window (earliest … latest)."""
        with self._tools() as tools:
            return self._info(tools, last_commit=last_commit)

    def _info(self, tools: Container, *, last_commit: bool) -> PitrInfo:
        out = self._pgbackrest(tools, ["--output=json", "info"], timeout=300)
        backups, wal_min, wal_max = parse_info(out, self.stanza)
        if not wal_max or not last_commit:
            return PitrInfo(self.stanza, backups, wal_min, wal_max, None, None, None)
        archive_id = self._archive_id(out, wal_max)
        listing = json.loads(self._pgbackrest(
            tools, ["--output=json", "--recurse", "repo-ls", f"archive/{self.stanza}/{archive_id}"], timeout=300))
        timeline = wal_max[:8]
        segments = sorted(((name.rsplit("/", 1)[-1][:24], name, entry.get("time", 0))
                           for name, entry in listing.items()
                           if entry.get("type") == "file" and _SEGMENT.match(name.rsplit("/", 1)[-1][:24])
                           and name.rsplit("/", 1)[-1][24:25] == "-" and name.rsplit("/", 1)[-1][:8] == timeline),
                          reverse=True)
        archived_at = datetime.fromtimestamp(segments[0][2], UTC) if segments else None
        found, segment = self._newest_commit(tools, archive_id, segments[:WAL_SEARCH_SEGMENTS])
        return PitrInfo(self.stanza, backups, wal_min, wal_max, archived_at, found, segment)

    def _archive_id(self, info_json: str, wal_max: str) -> str:
        entry = next(s for s in json.loads(info_json) if s.get("name") == self.stanza)
        ids = [a["id"] for a in entry.get("archive", []) if a.get("max") == wal_max]
        return str(ids[0])

    def _newest_commit(self, tools: Container, archive_id: str,
                       segments: list[tuple[str, str, int]]) -> tuple[datetime | None, str | None]:
        """The newest COMMIT/ABORT in the archived WAL and its segment: fetch segments newest first, read them with
        pg_waldump."""
        if not segments:
            return None, None
        result = _exec(tools, ["sh", "-c", _NEWEST_COMMIT_SCRIPT, "sh", self.stanza,
                               *[f"{seg}|archive/{self.stanza}/{archive_id}/{path}" for seg, path, _ in segments]],
                       env=self._tool_env(), user="postgres", timeout=600)
        for line in result.stdout.splitlines():
            if line.startswith("hw-commit "):
                return parse_commit_time(line), line.split()[1]
            if line.startswith("hw-error "):
                raise HeadwayError(f"could not read archived WAL of {self.stanza}: {line[9:].strip()}",
                                   "check the repository volume and pgbackrest.conf")
        return None, None

    # -- restore --------------------------------------------------------------------------------------------
    def restore_to(self, when: datetime | None, *, timeout: float = 3600, backup_after: bool = True) -> RestoreResult:
        """Bring the database back to its state at `when` (None: everything archived). The restore goes into a new
        data volume and is recovered in a separate container; the live volume is only swapped out once the
        restored database has been promoted, and is kept (labelled on the container) until the next restore."""
        started = time.monotonic()
        image = self.ensure_image()
        live = self.engine.get(self.container_name)
        was_running = live is not None and bool(self.engine.state(live).get("Running"))
        complete_until, archived_segment = None, None
        if was_running and live is not None and live.labels.get(STANZA) == self.stanza:
            complete_until, archived_segment = self._archive_everything(live)
        info = self.info()
        plan = plan_restore(info, when, complete_until=complete_until)
        # replaying the whole archive must get at least this far, or WAL is missing from the repository
        must_reach = (archived_segment or info.last_commit_segment) if plan.method == "end-of-archive" else None
        old_volume = self.data_volume()
        kept_before = live.labels.get(PREVIOUS_VOLUME) if live is not None else None
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        new_volume = f"{self.canonical_volume}-r{stamp}"
        target_label = pg_timestamp(plan.target) if plan.target else "end-of-archive"
        self._step(f"restore {self.stanza} to {target_label} into {new_volume}")

        down_at = time.monotonic()
        if was_running and live is not None:
            self.engine.stop(live, 60)
        recovery: Container | None = None
        try:
            self.engine.ensure_volume(new_volume, {**self._labels("volume"), RESTORED_TO: target_label})
            backup_set = self._restore_files(new_volume, plan, timeout)
            self._step("recover: replay WAL, then promote")
            recovery = self.engine.create(
                name=f"{self.container_name}-pitr-recovery-{uuid.uuid4().hex[:6]}", image=image,
                command=postgres_command(self.settings()), env=self._server_env(), labels=self._labels("oneoff"),
                network=None, restart=False,
                volumes={new_volume: {"bind": PGDATA, "mode": "rw"}, self.repo_volume: {"bind": REPO_PATH,
                                                                                          "mode": "rw"}})
            self._put_config(recovery)
            self.engine.start(recovery)
            try:
                self._wait_serving(recovery, timeout)
            except HeadwayError as exc:
                if "recovery ended before configured recovery target was reached" in (exc.details or ""):
                    raise HeadwayError(f"WAL needed to reach {target_label} is missing from the repository: "
                                       "recovery ended before the target", "restore to an earlier time; "
                                       "`pgbackrest verify` lists what is missing", details=exc.details) from None
                raise
            recovered_to, replayed_segment = self._replayed_until(recovery)
            if must_reach and replayed_segment[8:] < must_reach[8:]:
                raise HeadwayError(f"recovery stopped in WAL segment {replayed_segment[8:]}, before the end of the "
                                   f"archive ({must_reach[8:]}): WAL is missing from the repository",
                                   "restore to an earlier time; `pgbackrest verify` lists what is missing",
                                   details=self.engine.last_lines(recovery, 30))
            recovery.stop(timeout=120)  # a clean shutdown: checkpoint, and the new timeline's WAL is archived
            code = recovery.wait(timeout=130).get("StatusCode")
            if code != 0:
                raise HeadwayError(f"the recovered database did not shut down cleanly (exit {code})",
                                   "see its log below", details=self.engine.last_lines(recovery, 30))
        except BaseException:
            if recovery is not None:
                self.engine.remove(recovery)
            _remove_volume(self.engine, new_volume)
            if was_running and live is not None:
                self.engine.start(live)
                with suppress(HeadwayError):  # back as it was: serving again before the error is reported
                    self._wait_serving(live, min(timeout, 120))
            raise
        self.engine.remove(recovery)

        self._step(f"swap: {self.container_name} serves from {new_volume}; {old_volume} kept")
        try:
            self._replace_server(live, lambda: self._create_server(image, new_volume, previous=old_volume,
                                                                   restored_to=target_label), timeout,
                                 restart_old=was_running)
        except BaseException:
            _remove_volume(self.engine, new_volume)
            raise
        downtime = time.monotonic() - down_at
        serving_after = time.monotonic() - started
        if kept_before and kept_before not in (old_volume, new_volume):
            _remove_volume(self.engine, kept_before)  # the one kept from the restore before this one

        warnings: list[str] = []
        backup = None
        if backup_after:
            try:
                backup = self.base_backup("full")
            except HeadwayError as exc:
                warnings.append(f"the restore succeeded but the full backup after it failed: {exc.message}")
        return RestoreResult(target=plan.target, method=plan.method, recovered_to=recovered_to,
                             backup_set=backup_set, data_volume=new_volume, previous_volume=old_volume,
                             seconds=serving_after, downtime_seconds=downtime, backup=backup,
                             warnings=tuple(warnings))

    def _archive_everything(self, server: Container) -> tuple[datetime, str]:
        """Close the current WAL segment and wait until it is archived: everything committed up to now is then
        recoverable. Returns the time up to which the archive is complete, and that segment."""
        out = _exec(server, ["psql", "-X", "-At", "-F", "|", "-U", self.credentials.user, "-d",
                             self.credentials.database, "-c",
                             "select extract(epoch from clock_timestamp()), pg_walfile_name(pg_switch_wal())"],
                    env=self._tool_env(), timeout=60)
        if out.exit_code != 0 or "|" not in out.stdout:
            raise HeadwayError(f"could not switch WAL on {self.container_name}", "see the output below",
                               details=out.stderr[-2000:])
        epoch, segment = out.stdout.strip().split("|")
        deadline = time.monotonic() + self.archive_timeout + 120
        while True:
            state = _exec(server, ["psql", "-X", "-At", "-F", "|", "-U", self.credentials.user, "-d",
                                   self.credentials.database, "-c",
                                   "select coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '') "
                                   "from pg_stat_archiver"], env=self._tool_env(), timeout=30)
            archived, failed = (state.stdout.strip().split("|") + ["", ""])[:2]
            if archived and archived[8:] >= segment[8:] and archived[:8] == segment[:8]:
                break
            if time.monotonic() > deadline:
                raise HeadwayError(f"WAL segment {segment} was not archived within {self.archive_timeout + 120}s"
                                   + (f" (last failure: {failed})" if failed else ""),
                                   "check the repository volume and the database log (archive-push errors)",
                                   details=self.engine.last_lines(server, 30))
            time.sleep(0.2)  # polling a condition with a deadline
        # commits are stamped microseconds before their WAL record, so everything stamped before this is archived
        return datetime.fromtimestamp(float(epoch), UTC), segment

    def _restore_files(self, volume: str, plan: RestorePlan, timeout: float) -> str:
        args = ["--log-level-console=info", "restore"]
        if plan.method == "time" and plan.target is not None:
            args += ["--type=time", f"--target={pg_timestamp(plan.target)}", "--target-action=promote"]
        with self._tools({volume: PGDATA}) as tools:
            own = _exec(tools, ["sh", "-c", f"chown postgres:postgres {PGDATA} && chmod 0700 {PGDATA}"], timeout=60)
            if own.exit_code != 0:
                raise HeadwayError(f"could not prepare {volume} for the restore", "see the output below",
                                   details=own.stderr)
            out = self._pgbackrest(tools, args, timeout=timeout)
        m = re.search(r"restore backup set (\S+?),", out)
        return m.group(1) if m else ""

    def _replayed_until(self, container: Container) -> tuple[datetime | None, str]:
        """The last transaction recovery replayed, and the WAL segment it stopped in."""
        out = _exec(container, ["psql", "-X", "-At", "-F", "|", "-U", self.credentials.user, "-d",
                                self.credentials.database, "-c",
                                "select extract(epoch from pg_last_xact_replay_timestamp()), "
                                "pg_walfile_name(pg_last_wal_replay_lsn())"], env=self._tool_env(), timeout=30)
        if out.exit_code != 0 or "|" not in out.stdout:
            raise HeadwayError("could not ask the recovered database how far it got", "see the output below",
                               details=out.stderr[-2000:])
        epoch, segment = out.stdout.strip().split("|")
        return (datetime.fromtimestamp(float(epoch), UTC) if epoch else None), segment


# -- docker helpers -----------------------------------------------------------------------------------------
def _mount_of(container: Container, path: str) -> str | None:
    for mount in container.attrs.get("Mounts", []):
        if mount.get("Destination") == path and mount.get("Type") == "volume":
            return str(mount.get("Name"))
    return None


def _remove_volume(engine: DockerEngine, name: str) -> None:
    engine.remove_volume(name)


def _exec(container: Container, argv: list[str], *, env: dict[str, str] | None = None, user: str = "",
          timeout: float | None = None) -> ExecResult:
    return exec_split(container, argv, env=env, user=user, timeout=timeout)


def _put_file(container: Container, path: str, data: bytes, mode: int = 0o644) -> None:
    put_file(container, path, data, mode)
