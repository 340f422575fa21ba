"""Restore into the live database without risking it.

1. Check the backup end to end (checksum, decryption, decompression) before anything live is touched.
   MariaDB/MySQL and Redis: a whole pass over the backup before anything else. PostgreSQL: the backup streams
   into a new database beside the live one while its checksum is computed; pg_restore only ever connects to that
   new database, and nothing live is touched, or recorded, until the checksum matched.
2. Restore into a new database beside the live one (Redis: a new file beside the live one) and check its counts.
3. Take a safety backup of the live data (Redis: before step 2).
4. Only then stop the app, swap the new database in (renames: one short step), start the app again.
The data that was live is kept as `DB_before_restore_<time>` until the next successful restore.
Any failure before the swap drops the new database and leaves the live one exactly as it was.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from headway.engine import exec_stream
from headway.data.catalog import BackupRecord
from headway.data.databases import DatabaseSpec
from headway.data.engines import Endpoint, MariaDB, Postgres, Redis
from headway.data.verify import compare_counts
from headway.engine import labels as L
from headway.errors import Aborted, ExitCode, HeadwayError

if TYPE_CHECKING:
    from headway.data.backup import BackupService


class AppControl(Protocol):
    """Stops the app's containers for the swap and brings them back; stop() says whether anything was stopped."""

    def stop(self) -> bool: ...
    def start(self) -> None: ...


@dataclass
class RestoreResult:
    backup_id: str
    database: str
    safety_backup: str | None
    kept_as: str  # where the data that was live is kept
    app_stopped_s: float
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)


def restore_live(svc: BackupService, rec: BackupRecord, spec: DatabaseSpec, identities: list[Any] | None,
                 app: AppControl | None, confirmed: bool,
                 before_swap: Callable[[str, str], None] | None = None) -> RestoreResult:
    """`before_swap(container_id, new_database)` runs on the restored copy before it is swapped in (SQL engines);
    an exception there drops the copy like any other failure before the swap."""
    from headway.data.backup import RestoreFailed, family

    if family(rec.engine) != family(spec.engine):
        raise HeadwayError(f"backup {rec.id} is a {rec.engine} dump; database {spec.name} is {spec.engine}",
                           f"restore it into a {rec.engine} database (--into NAME), or pick a backup of "
                           f"{spec.name}", exit_code=ExitCode.USAGE)
    if not confirmed:
        raise Aborted(f"restoring {rec.id} replaces the data of {spec.name} in {svc.t.environment}",
                      "confirm at the prompt, or pass --yes")
    started = time.monotonic()
    if not isinstance(spec.dialect, Postgres):
        with svc.report.step(f"check {rec.id} (checksum{', decryption' if rec.encrypted else ''})"):
            svc.check(rec, identities)
    with svc.lock(spec, f"restore {rec.id}"):
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        if isinstance(spec.dialect, Redis):
            safety = svc.backup_locked(spec, reason=f"before restore of {rec.id}")
            kept, stopped_s, counts = _redis(svc, rec, spec, identities, app, stamp)
        else:
            kept, stopped_s, counts, safety = _sql(svc, rec, spec, identities, app, stamp, RestoreFailed,
                                                   before_swap)
    return RestoreResult(rec.id, spec.name, safety.id, kept, round(stopped_s, 3),
                         round(time.monotonic() - started, 3), counts)


def _sql(svc: BackupService, rec: BackupRecord, spec: DatabaseSpec, identities: list[Any] | None,
         app: AppControl | None, stamp: str, failed: type[HeadwayError],
         before_swap: Callable[[str, str], None] | None = None) -> tuple[str, float, dict[str, int], BackupRecord]:
    dialect = spec.dialect
    live = spec.database
    new, old = f"{live}_restore_{stamp}", f"{live}_before_restore_{stamp}"
    with svc.dbs.tools(spec) as cid:
        ep = svc.dbs.endpoint(spec)
        admin = dialect.admin_database(ep)
        checked = f" (checksum{', decryption' if rec.encrypted else ''} checked on the way)" \
            if isinstance(dialect, Postgres) else ""
        with svc.report.step(f"restore {rec.id} into a new database {new}{checked}"):
            svc.dbs.run_sql(dialect, cid, dialect.create_sql(new), admin, ep)
            try:
                svc.restore_into(rec, cid, ep, new, identities)
                counts = svc.stats(dialect, cid, ep, new)
                problems = compare_counts(rec.counts, rec.counts_after, counts)
                if problems:
                    raise failed(f"the restored data does not match the backup: {'; '.join(problems[:5])}",
                                 "the live database is untouched; verify the backup (`headway db verify`)")
                if before_swap is not None:
                    before_swap(cid, new)
            except BaseException:
                _drop_quietly(svc, dialect, cid, new, admin, ep)
                raise
        try:  # once the backup proved whole and the copy matches: the live data as it is now
            safety = svc.backup_locked(spec, reason=f"before restore of {rec.id}")
        except BaseException:
            _drop_quietly(svc, dialect, cid, new, admin, ep)
            raise
        stopped_at = time.monotonic()
        stopped = app.stop() if app is not None else False
        try:
            with svc.report.step(f"swap {new} in as {live} (the old data stays as {old})"):
                try:
                    if isinstance(dialect, Postgres):
                        _swap_postgres(svc, dialect, cid, ep, live, new, old)
                    elif isinstance(dialect, MariaDB):
                        _swap_mysql(svc, dialect, cid, ep, live, new, old)
                except BaseException:
                    _drop_quietly(svc, dialect, cid, new, admin, ep)
                    raise
        finally:
            if stopped and app is not None:
                app.start()
        stopped_s = time.monotonic() - stopped_at
        with svc.report.step("drop data kept by earlier restores"):
            for (name,) in (r[:1] for r in svc.dbs.run_sql(dialect, cid, dialect.list_databases_sql(), admin, ep)):
                if name.startswith(f"{live}_before_restore_") and name != old:
                    _drop_quietly(svc, dialect, cid, name, admin, ep)
    return old, stopped_s, counts, safety


def _swap_postgres(svc: BackupService, dialect: Postgres, cid: str, ep: Endpoint, live: str, new: str,
                   old: str) -> None:
    first, terminate, rename = dialect.swap_sql(live, new, old)
    svc.dbs.run_sql(dialect, cid, first, "postgres", ep)
    try:
        deadline = time.monotonic() + 30
        while True:
            svc.dbs.run_sql(dialect, cid, terminate, "postgres", ep)
            try:
                svc.dbs.run_sql(dialect, cid, rename, "postgres", ep)
                break
            except HeadwayError as exc:  # a client reconnected between terminate and rename: once more
                if "being accessed by other users" not in (exc.details or "") or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        svc.dbs.run_sql(dialect, cid, dialect.unswap_sql(live), "postgres", ep)
    except BaseException:
        svc.dbs.run_sql(dialect, cid, dialect.unswap_sql(live), "postgres", ep)
        raise


def _swap_mysql(svc: BackupService, dialect: MariaDB, cid: str, ep: Endpoint, live: str, new: str,
                old: str) -> None:
    tables_live = [r[0] for r in svc.dbs.run_sql(dialect, cid, dialect.tables_sql(live), "mysql", ep)]
    tables_new = [r[0] for r in svc.dbs.run_sql(dialect, cid, dialect.tables_sql(new), "mysql", ep)]
    svc.dbs.run_sql(dialect, cid, dialect.create_sql(old), "mysql", ep)
    if tables_live or tables_new:
        svc.dbs.run_sql(dialect, cid, dialect.swap_sql(live, new, old, tables_live, tables_new), "mysql", ep)
    svc.dbs.run_sql(dialect, cid, dialect.drop_sql(new), "mysql", ep)


def _drop_quietly(svc: BackupService, dialect: Any, cid: str, name: str, admin: str, ep: Endpoint) -> None:
    try:
        svc.dbs.run_sql(dialect, cid, dialect.drop_sql(name), admin, ep)
    except HeadwayError as exc:
        svc.report.info(f"warning: could not drop {name}: {exc.message}")


def _redis(svc: BackupService, rec: BackupRecord, spec: DatabaseSpec, identities: list[Any] | None,
           app: AppControl | None, stamp: str) -> tuple[str, float, dict[str, int]]:
    """Redis keeps one dataset per server: the snapshot is written beside the live files, checked by loading it
    in a scratch server, then swapped in while the live server is stopped."""
    engine = svc.engine
    live = svc.dbs.require_running(spec)
    dialect = spec.dialect
    assert isinstance(dialect, Redis)
    kept = f"before_restore_{stamp}"
    helper = engine.create(
        name=f"{spec.container_name}-restore-{uuid.uuid4().hex[:6]}", image=live.attrs["Config"]["Image"],
        command=["sleep", "infinity"], env={},
        labels=L.owned("oneoff", app=svc.t.app, environment=svc.t.environment, role=spec.name),
        network=None, restart=False, volumes={spec.volume_name: {"bind": "/data", "mode": "rw"}})
    stopped_s = 0.0
    try:
        engine.start(helper)
        incoming = f"/data/incoming-{stamp}.rdb"
        with svc.report.step(f"restore {rec.id} beside the live data and load it in a scratch server"):
            svc.restore_into(rec, helper.id or "", Endpoint("", 0, "", "", "0"), incoming, identities)
            counts = _load_check(svc, helper.id or "", dialect, incoming)
            problems = compare_counts(rec.counts, rec.counts_after, counts)
            if problems:
                _sh(svc, helper.id or "", f'rm -f "{incoming}"')
                raise HeadwayError(f"the restored snapshot does not match the backup: {'; '.join(problems[:5])}",
                                   "the live data is untouched")
        stopped_at = time.monotonic()
        stopped = app.stop() if app is not None else False
        try:
            with svc.report.step(f"swap the snapshot in (the old data stays in /data/{kept})"):
                engine.stop(live, 30)  # redis saves its dataset on the way down: that is what gets kept
                _sh(svc, helper.id or "",
                    f'set -e; mkdir -p /data/{kept}; '
                    f'for f in /data/* /data/.[!.]*; do [ -e "$f" ] || continue; case "$f" in '
                    f'/data/before_restore_*|{incoming}) ;; *) mv "$f" /data/{kept}/ ;; esac; done; '
                    f'mv "{incoming}" /data/dump.rdb; chown redis:redis /data/dump.rdb')
                engine.start(live)
                svc.dbs._wait_healthy([(live, spec)])
        finally:
            if stopped and app is not None:
                app.start()
        stopped_s = time.monotonic() - stopped_at
        _sh(svc, helper.id or "", f'for d in /data/before_restore_*; do [ "$d" = /data/{kept} ] || rm -rf "$d"; done')
    except BaseException:
        if not engine.state(live).get("Running"):
            _sh(svc, helper.id or "", f'if [ -d /data/{kept} ]; then rm -f /data/dump.rdb; '
                f'mv /data/{kept}/* /data/ 2>/dev/null; rmdir /data/{kept}; fi; true')
            engine.start(live)
        raise
    finally:
        engine.remove(helper)
    return f"/data/{kept} in {spec.volume_name}", stopped_s, counts


def _sh(svc: BackupService, cid: str, script: str) -> str:
    code, out, err = exec_stream.run(svc.engine.client, cid, ["sh", "-c", script])
    if code != 0:
        raise HeadwayError(f"restore step failed (exit {code})", "the live data is untouched", details=err)
    return out


def _load_check(svc: BackupService, cid: str, dialect: Redis, path: str) -> dict[str, int]:
    directory, _, name = path.rpartition("/")
    code, _, err = exec_stream.run(svc.engine.client, cid, ["redis-check-rdb", path])
    if code != 0:
        raise HeadwayError("redis-check-rdb rejects the snapshot", "the live data is untouched", details=err)
    port = "6390"
    exec_stream.run(svc.engine.client, cid, ["redis-server", "--dir", directory, "--dbfilename", name, "--save", "",
                                             "--appendonly", "no", "--port", port, "--daemonize", "yes"])
    ep = Endpoint("127.0.0.1", int(port), "", "", "0")
    deadline = time.monotonic() + 120
    while True:
        code, out, _ = exec_stream.run(svc.engine.client, cid, dialect.cli_argv(ep, "PING"))
        if code == 0 and "PONG" in out:
            break
        if time.monotonic() > deadline:
            raise HeadwayError("the snapshot did not load in a scratch server", "the live data is untouched")
        time.sleep(0.1)  # polling readiness with a deadline
    counts = svc.stats(dialect, cid, ep, "0")
    exec_stream.run(svc.engine.client, cid, dialect.cli_argv(ep, "SHUTDOWN", "NOSAVE"))
    return counts
