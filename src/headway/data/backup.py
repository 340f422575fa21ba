"""Backups of one app's databases in one environment: take, list, check, stream back, and apply retention.

The entry point for every database operation (verify and restore build on it), and for other parts of headway:
`latest_good(name)` finds what to restore, `restore_into(record, container, endpoint, database)` streams a backup
into any database a caller prepared.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from headway.config.resolve import Target
from headway.engine import exec_stream
from headway.data.catalog import BackupRecord, Catalog, RestoreLog, age, is_safety
from headway.data.databases import SPOOL, Databases, DatabaseSpec, StorageSpec, resolve_storage
from headway.data.engines import DIALECTS, Dialect, Endpoint, Postgres, Redis
from headway.engine.exec_stream import ExecProcess, SpoolFeed, SpoolPipe
from headway.data.lock import database_lock
from headway.data.pipeline import decode, encode
from headway.data.retention import to_delete
from headway.data.storage import LocalStore, ObjectWriter, S3Store, Store, StorageError
from headway.engine.docker import DockerEngine
from headway.errors import ConfigError, HeadwayError, NotFound
from headway.release.report import RecordingReporter, Reporter
from headway.state.store import now_iso

if TYPE_CHECKING:
    from headway.data.restore import AppControl, RestoreResult
    from headway.data.verify import VerifyResult


class BackupFailed(HeadwayError):
    pass


class RestoreFailed(HeadwayError):
    pass


def family(engine: str) -> str:
    """Engines whose dumps restore into each other."""
    return "mysql" if engine in ("mysql", "mariadb") else engine


class BackupService:
    def __init__(self, target: Target, engine: DockerEngine, state_root: Path,
                 reporter: Reporter | None = None) -> None:
        self.t = target
        self.engine = engine
        self.state_root = state_root
        self.report: Reporter = reporter or RecordingReporter()
        self.dbs = Databases(target, engine, state_root, self.report)
        self.catalog = Catalog(state_root, target.app, target.environment)
        self._storage: StorageSpec | None = None
        self._stores: dict[str, Store] = {}
        # told of each manual or scheduled backup and of every failed one: (severity, title, text)
        self.announce: Callable[[str, str, str], None] | None = None

    # -- storage --------------------------------------------------------------------------------------
    @property
    def storage(self) -> StorageSpec:
        if self._storage is None:
            self._storage = resolve_storage(self.t, self.state_root)
        return self._storage

    def store(self, name: str) -> Store:
        if name not in self._stores:
            if name == "local":
                self._stores[name] = LocalStore(self.storage.local_path)
            elif self.storage.s3 is None:
                raise ConfigError("backups go to s3, but `storage.s3` is not configured", "add storage.s3")
            else:
                self._stores[name] = S3Store(self.storage.s3)
        return self._stores[name]

    def engine_is_local(self) -> bool:
        """A FIFO on this host reaches the container only when the Docker Engine runs on this host."""
        base = str(getattr(self.engine.client.api, "base_url", ""))
        return base.startswith("http+docker://localhost") or base.startswith("http+unix")

    def lock(self, spec: DatabaseSpec, what: str, wait: float = 0.0) -> Any:
        path = self.state_root / "apps" / self.t.app / self.t.environment / "databases" / f"{spec.name}.lock"
        return database_lock(path, what, wait)

    # -- catalog --------------------------------------------------------------------------------------
    def backups(self, name: str | None = None) -> list[BackupRecord]:
        return self.catalog.all(name)

    def latest_good(self, name: str | None = None) -> BackupRecord | None:
        """The newest good backup someone chose to take (manual or scheduled): never a safety backup headway took
        by itself before a restore, a deploy or an image change."""
        spec = self.dbs.spec(name)
        good = [r for r in self.catalog.good(spec.name) if not is_safety(r)]
        return good[0] if good else None

    def get(self, backup_id: str | None, name: str | None = None) -> BackupRecord:
        """A backup by id, or the newest good one of the database (safety backups left out) when no id is
        given."""
        if backup_id in (None, "latest"):
            rec = self.latest_good(name)
            if rec is None:
                spec = self.dbs.spec(name)
                env = self.t.environment
                safety = self.catalog.good(spec.name)
                if safety:
                    raise NotFound(f"no backup of {spec.name} in {env} to pick by default: the only good ones are "
                                   f"safety backups headway took by itself (newest: {safety[0].id}, "
                                   f"{safety[0].reason}, {age(safety[0].started_at)})",
                                   f"name one to use it: `headway db restore -e {env} {safety[0].id}`; or take a "
                                   f"backup: `headway db backup -e {env} {spec.name}`")
                raise NotFound(f"no good backup of {spec.name} in {env}",
                               f"take one: `headway db backup -e {env} {spec.name}`")
            return rec
        assert backup_id is not None
        rec = self.catalog.get(backup_id)
        if rec.status != "good":
            raise NotFound(f"backup {backup_id} is {rec.status}, not restorable",
                           f"see `headway db backups -e {self.t.environment}`")
        return rec

    def describe_choice(self, rec: BackupRecord) -> list[str]:
        """What to tell someone about to use `rec`: which backup and how old, and a warning for each restore of
        its database in this environment since it was taken (the backup predates the data that replaced it)."""
        lines = [f"using backup {rec.id} of {rec.database} ({rec.reason}, taken {age(rec.started_at)}, "
                 f"{rec.started_at[:19].replace('T', ' ')} UTC)"]
        for entry in RestoreLog(self.state_root, self.t.app, self.t.environment).since(rec.database,
                                                                                         rec.started_at):
            lines.append(f"warning: {rec.database} in {self.t.environment} was restored from {entry.backup} "
                         f"{age(entry.at)}, after {rec.id} was taken: that backup holds the data from before "
                         "that restore")
        return lines

    def backup_all(self, *, reason: str = "manual", wait: float = 0.0) -> list[BackupRecord]:
        """A backup of every database of the environment, one after the other; the first failure stops (the
        backups already taken are kept)."""
        if not self.dbs.specs:
            self.dbs.spec(None)  # raises: no databases
        return [self.backup(name, reason=reason, wait=wait) for name in self.dbs.specs]

    # -- counts ---------------------------------------------------------------------------------------
    def stats(self, dialect: Dialect, container_id: str, ep: Endpoint, database: str) -> dict[str, int]:
        """Rows per table (keys per Redis database): recorded at backup time, compared at verify time."""
        if isinstance(dialect, Redis):
            code, out, err = exec_stream.run(self.engine.client, container_id, dialect.cli_argv(ep, "INFO",
                                                                                                 "keyspace"),
                                             env=dialect.tool_env(ep))
            if code != 0 or "ERR" in out[:20] or "NOAUTH" in out:
                raise HeadwayError(f"redis INFO failed: {(out + err).strip()[:200]}", "check the redis container")
            counts = {}
            for line in out.splitlines():
                if line.startswith("db") and ":" in line:
                    db, _, fields = line.partition(":")
                    counts[db] = int(dict(f.split("=") for f in fields.strip().split(","))["keys"])
            return counts
        tables = [row[0] for row in self.dbs.run_sql(dialect, container_id, dialect.tables_sql(database), database,
                                                     ep)]
        if not tables:
            return {}
        rows = self.dbs.run_sql(dialect, container_id, dialect.count_sql(database, tables), database, ep)
        return {row[0]: int(row[1]) for row in rows}

    # -- backup ---------------------------------------------------------------------------------------
    def backup(self, name: str | None = None, *, reason: str = "manual", deploy: int | None = None,
               wait: float = 0.0) -> BackupRecord:
        spec = self.dbs.spec(name)
        subject = f"{self.t.app}/{self.t.environment}"
        try:
            with self.lock(spec, f"backup {spec.name}", wait):
                rec = self.backup_locked(spec, reason=reason, deploy=deploy)
        except Exception as exc:
            fix = getattr(exc, "fix", None)
            self._announce("warning", f"{reason} backup of {spec.name} ({subject}) failed",
                           str(getattr(exc, "message", exc)) + (f"\nfix: {fix}" if fix else ""))
            raise
        self.apply_retention(spec)
        if reason in ("manual", "scheduled"):
            self._announce("info", f"{subject}: {spec.name} backed up",
                           f"{rec.id}: {rec.size} bytes in {rec.duration_s:.1f}s"
                           + (", encrypted" if rec.encrypted else "") + f" → {', '.join(rec.locations)}")
        return rec

    def _announce(self, severity: str, title: str, text: str) -> None:
        if self.announce is not None:
            self.announce(severity, title, text)

    def backup_locked(self, spec: DatabaseSpec, *, reason: str, deploy: int | None = None) -> BackupRecord:
        """Dump → zstd → (age) → sha256 → every storage. Recorded good only once all of it succeeded."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        backup_id = f"{spec.name}-{stamp}-{secrets.token_hex(2)}"
        suffix = spec.dialect.suffix + (".age" if spec.backup.encrypt_to else "")
        key = f"{self.t.app}/{self.t.environment}/{spec.name}/{backup_id}{suffix}"
        container = self.dbs.container(spec) if spec.managed else None
        image = container.attrs["Config"]["Image"] if container is not None else spec.image
        rec = BackupRecord(id=backup_id, app=self.t.app, environment=self.t.environment, database=spec.name,
                           engine=spec.engine, image=image, format=spec.dialect.content, key=key, reason=reason,
                           deploy=deploy, encrypted_to=list(spec.backup.encrypt_to))
        self.catalog.record(rec)
        started = time.monotonic()
        writers: list[tuple[Store, ObjectWriter]] = []
        proc: ExecProcess | SpoolPipe | None = None
        session: _SnapshotSession | None = None
        try:
            with self.report.step(f"back up {spec.name} ({spec.engine}) → {', '.join(spec.backup.storage)}") as step:
                stores = [self.store(n) for n in spec.backup.storage]
                with self.dbs.tools(spec) as cid:
                    ep = self.dbs.endpoint(spec)
                    dump_argv = spec.dialect.dump_argv(ep)
                    if isinstance(spec.dialect, Postgres):
                        session = _SnapshotSession.open(self.engine.client, cid, spec.dialect, ep, ep.database)
                    if session is not None:
                        dump_argv = session.dump_argv
                    else:
                        rec.counts = self.stats(spec.dialect, cid, ep, ep.database)
                    for store in stores:  # one by one: a storage that fails leaves no debris
                        writers.append((store, store.open_write(key)))
                    spool = self.dbs.shared_spool(container) if container is not None else None
                    if spool is not None and self.engine_is_local():
                        proc = SpoolPipe(self.engine.client, cid, dump_argv,
                                         env=spec.dialect.tool_env(ep), host_dir=spool, container_dir=SPOOL)
                    else:
                        proc = ExecProcess(self.engine.client, cid, dump_argv, env=spec.dialect.tool_env(ep))
                    if session is not None:
                        session.count_in_background()  # in the dump's snapshot, while the dump runs
                    encoded = encode(proc, [w for _, w in writers], spec.backup.encrypt_to)
                    code = proc.wait()
                    if code != 0:
                        raise BackupFailed(f"{spec.dialect.dump_argv(ep)[0]} exited {code}; the backup was not kept",
                                           "see the tool's message above; older backups are untouched",
                                           details=_scrub(proc.stderr, ep))
                    if encoded.raw_size == 0:
                        raise BackupFailed("the dump tool wrote nothing; the backup was not kept",
                                           "see the database's log", details=_scrub(proc.stderr, ep))
                    if session is not None:  # the rows of the dump itself: nothing wrote in between
                        rec.counts = rec.counts_after = session.finish()
                        session = None
                    else:
                        rec.counts_after = self.stats(spec.dialect, cid, ep, ep.database)
                rec.size, rec.raw_size, rec.sha256 = encoded.size, encoded.raw_size, encoded.sha256
                for store, writer in writers:
                    rec.locations[store.name] = writer.commit()
                rec.status = "good"
                rec.finished_at = now_iso()
                rec.duration_s = round(time.monotonic() - started, 3)
                step.detail = f"{rec.id}, {_size(rec.raw_size)} → {_size(rec.size)} in {rec.duration_s:.1f}s"
                for store, _ in writers:  # the catalog entry travels with the backup, for a host that was lost
                    try:
                        store.put_bytes(key + ".json", rec.model_dump_json(indent=2).encode())
                    except (HeadwayError, OSError):
                        pass
        except BaseException as exc:
            if proc is not None:
                proc.kill()
            if session is not None:
                session.kill()
            for store, writer in writers:
                writer.abort()
                if store.name in rec.locations:
                    store.delete(key)
            rec.status, rec.locations = "failed", {}
            rec.error = (exc.message if isinstance(exc, HeadwayError) else f"{type(exc).__name__}: {exc}")[:500]
            rec.finished_at = now_iso()
            rec.duration_s = round(time.monotonic() - started, 3)
            self.catalog.record(rec)
            if isinstance(exc, HeadwayError) or not isinstance(exc, Exception):
                raise
            raise BackupFailed(f"backup of {spec.name} failed: {rec.error}", "older backups are untouched") from exc
        self.catalog.record(rec)
        return rec

    def apply_retention(self, spec: DatabaseSpec) -> list[BackupRecord]:
        """Delete what the retention policy lets go; called only after a good backup."""
        deleted = []
        for rec in to_delete(self.catalog.good(spec.name), spec.backup.retention):
            for name in rec.locations:
                try:
                    store = self.store(name)
                    store.delete(rec.key)
                    store.delete(rec.key + ".json")
                except (HeadwayError, OSError) as exc:
                    self.report.info(f"warning: could not delete {rec.id} from {name}: {exc}")
            self.catalog.record(rec.model_copy(update={"status": "deleted"}))
            deleted.append(rec)
        return deleted

    # -- reading backups back -------------------------------------------------------------------------
    @contextmanager
    def open_stored(self, rec: BackupRecord) -> Iterator[BinaryIO]:
        """The stored bytes, from the first location that answers (local before s3)."""
        errors = []
        for name in sorted(rec.locations, key=lambda n: n != "local"):
            try:
                fh = self.store(name).open_read(rec.key)
            except (StorageError, ConfigError) as exc:
                errors.append(exc.message)
                continue
            try:
                yield fh
            finally:
                fh.close()
            return
        raise StorageError(f"backup {rec.id} cannot be read from any location: {'; '.join(errors)}",
                           "check the storage, or use another backup")

    def check(self, rec: BackupRecord, identities: list[Any] | None) -> int:
        """Read the whole backup: checksum, decryption and decompression, touching no database."""
        with self.open_stored(rec) as fh:
            return decode(fh, None, sha256=rec.sha256, size=rec.size, identities=identities,
                          encrypted=rec.encrypted)

    def restore_into(self, rec: BackupRecord, container_id: str, ep: Endpoint, database: str,
                     identities: list[Any] | None) -> None:
        """Stream a backup into `database` (which exists, empty) with the engine's own restore tool running in
        `container_id`; for Redis, `database` is the path of the RDB file to write.

        The checksum is checked as the bytes pass and judged once all of them were read: IntegrityError then, even
        if the tool already finished. Whatever this wrote is not to be used until it returned."""
        dialect = DIALECTS[rec.engine]
        if isinstance(dialect, Redis):
            argv = ["sh", "-c", 'cat > "$1.partial" && mv "$1.partial" "$1"', "sh", database]
            env: dict[str, str] = {}
        else:
            argv, env = dialect.restore_argv(ep, database), dialect.tool_env(ep)
        container = self.engine.client.containers.get(container_id)
        spool = self.dbs.shared_spool(container) if self.engine_is_local() else None
        proc: ExecProcess | SpoolFeed
        if spool is not None:
            proc = SpoolFeed(self.engine.client, container_id, argv, env=env, host_dir=spool, container_dir=SPOOL)
        else:
            proc = ExecProcess(self.engine.client, container_id, argv, env=env, stdin=True)
            proc.drain_in_background()
        try:
            with self.open_stored(rec) as fh:
                decode(fh, proc, sha256=rec.sha256, size=rec.size, identities=identities, encrypted=rec.encrypted)
            proc.close_stdin()
        except BrokenPipeError:
            code = proc.wait(60)
            raise RestoreFailed(f"{argv[0]} stopped (exit {code}) before the whole backup was restored",
                                "see its message above", details=_scrub(proc.stderr, ep)) from None
        except BaseException:
            proc.kill()
            raise
        code = proc.wait()
        if code != 0:
            raise RestoreFailed(f"{argv[0]} exited {code}", "see its message above",
                                details=_scrub(proc.stderr + proc.stdout_tail, ep))

    # -- verify and restore ---------------------------------------------------------------------------
    def verify(self, backup_id: str | None = None, *, name: str | None = None,
               identities: list[Any] | None = None) -> VerifyResult:
        from headway.data.verify import verify_backup

        return verify_backup(self, self.get(backup_id, name), identities)

    def restore(self, backup_id: str | None = None, *, name: str | None = None, into: str | None = None,
                identities: list[Any] | None = None, app: AppControl | None = None,
                confirmed: bool = False) -> RestoreResult:
        from headway.data.restore import restore_live

        rec = self.get(backup_id, name)
        return restore_live(self, rec, self.dbs.spec(into or rec.database), identities, app, confirmed)

    def scheduled(self, name: str | None = None, identities: list[Any] | None = None) -> dict[str, Any]:
        """What the host's cron runs: a backup, then (by default) its verification; retention after success."""
        spec = self.dbs.spec(name)
        rec = self.backup(spec.name, reason="scheduled", wait=600)
        out: dict[str, Any] = {"backup": rec.model_dump()}
        if spec.backup.verify:
            out["verify"] = self.verify(rec.id, identities=identities).__dict__
            if out["verify"].get("status") == "failed":
                self._announce("warning", f"{self.t.app}/{self.t.environment}: backup {rec.id} failed its "
                               "verification", str(out["verify"].get("detail") or out["verify"].get("error") or ""))
        return out

    def manifest(self, rec: BackupRecord) -> str:
        return json.dumps(rec.model_dump(), indent=2)


class _SnapshotSession:
    """A psql session holding a REPEATABLE READ transaction whose snapshot pg_dump imports (--snapshot): the rows it
    counts are exactly the rows of the dump, and it counts them while the dump runs instead of before and after."""

    MARK = "__headway_done__"

    def __init__(self, client: Any, container_id: str, dialect: Postgres, ep: Endpoint, database: str) -> None:
        self.dialect, self.ep, self.database = dialect, ep, database
        self.proc = ExecProcess(client, container_id, dialect.session_argv(ep, database), env=dialect.tool_env(ep),
                                stdin=True)
        self._buf = b""
        self._counts: dict[str, int] = {}
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.tables: list[str] = []
        self.dump_argv: list[str] = []

    @classmethod
    def open(cls, client: Any, container_id: str, dialect: Postgres, ep: Endpoint,
             database: str) -> _SnapshotSession | None:
        """The session with its snapshot exported, or None when the server cannot export one (counts are then
        taken before and after the dump)."""
        session = cls(client, container_id, dialect, ep, database)
        try:
            session.ask("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            session.tables = [row[0] for row in session.ask(dialect.tables_sql(database)) if row and row[0]]
            snapshot = session.ask("SELECT pg_export_snapshot()")[0][0]
            session.dump_argv = dialect.snapshot_dump_argv(ep, snapshot)
        except (HeadwayError, OSError, IndexError):
            session.kill()
            return None
        return session

    def ask(self, sql: str) -> list[list[str]]:
        """Rows of one statement run in the session (the transaction stays open)."""
        self.proc.write(f"{sql.rstrip().rstrip(';')};\n\\echo {self.MARK}\n".encode())
        rows: list[list[str]] = []
        while True:
            while b"\n" not in self._buf:
                chunk = self.proc.read(65536)
                if not chunk:
                    raise HeadwayError(f"the psql session on {self.database} ended unexpectedly",
                                       "see the database's message above",
                                       details=_scrub(self.proc.stderr, self.ep))
                self._buf += chunk
            line, _, self._buf = self._buf.partition(b"\n")
            text = line.decode(errors="replace")
            if text == self.MARK:
                return rows
            rows.append(text.split("\t"))

    def count_in_background(self) -> None:
        def count() -> None:
            try:
                if self.tables:
                    rows = self.ask(self.dialect.count_sql(self.database, self.tables))
                    self._counts = {row[0]: int(row[1]) for row in rows}
            except BaseException as exc:  # noqa: BLE001 - handed to finish()
                self._error = exc
        self._thread = threading.Thread(target=count, daemon=True)
        self._thread.start()

    def finish(self) -> dict[str, int]:
        """The counts, once the dump is complete; ends the transaction."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            self.kill()
            if isinstance(self._error, HeadwayError):
                raise self._error
            raise HeadwayError(f"counting the rows of {self.database} failed: {self._error}",
                               "see the database's message above")
        self.ask("COMMIT")
        self.proc.close_stdin()  # psql ends at the end of its input: nothing to wait for
        self.proc.close()
        return self._counts

    def kill(self) -> None:
        self.proc.kill()


def _scrub(text: str, ep: Endpoint) -> str:
    return text.replace(ep.password, "***") if ep.password else text


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
