"""Restore into the live database without risking it, and without taking the site down.

1. Check the backup end to end (checksum, decryption, decompression) before anything live is touched.
   MariaDB/MySQL and Redis: a whole pass over the backup before anything else. PostgreSQL: the backup streams
   into a new database beside the live one while its checksum is computed; pg_restore only ever connects to that
   new database, and nothing live is touched, or recorded, until the checksum matched.
2. Restore into a new database beside the live one (Redis: a new file beside the live one) and check its counts.
3. Take a safety backup of the live data (Redis: before step 2).
4. Only then hold the environment's requests (the proxy answers its maintenance page, 503 with Retry-After: a
   routing change, no reload), swap the new database in (PostgreSQL: the live database's sessions are terminated and
   both renames commit together; MariaDB/MySQL: one RENAME TABLE; Redis: the server restarts on the new snapshot),
   check that the app's web containers answer their health check again (their connection pools reconnect), and let
   the requests through. No app container is stopped or started.
The data that was live is kept as `DB_before_restore_<time>` until the next successful restore.
Any failure before the swap drops the new database and leaves the live one exactly as it was.

The whole restore is one journaled operation of the environment (`restore`), under the environment's deploy lock:
a process killed at any point is finished or undone by the next command (`recover_restore`), from what the
database server holds: the live database is never left half-swapped, the copy and the data that was live are
never both lost, and the requests are never left held.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from headway import faults
from headway.data.catalog import BackupRecord, RestoreEntry, RestoreLog
from headway.data.databases import DatabaseSpec
from headway.data.engines import Endpoint, MariaDB, Postgres, Redis
from headway.data.verify import compare_counts
from headway.engine import exec_stream
from headway.engine import labels as L
from headway.errors import Aborted, ExitCode, HeadwayError
from headway.state.journal import Journal, Operation
from headway.state.store import AppState, now_iso, operator

if TYPE_CHECKING:
    from headway.data.backup import BackupService
    from headway.proxy.nginx import Proxy

RESTORE_MESSAGE = "Restoring data: back in a moment."
POINTS = ["restore:begin", "restore:created", "restore:restored", "restore:safety", "restore:held",
          "restore:stopped", "restore:swapped", "restore:released"]


class AppControl(Protocol):
    """The environment around a restore: its deploy lock (with what an interrupted command left finished or undone
    first), and the one moment its requests are held: the swap."""

    def guard(self, what: str) -> AbstractContextManager[None]: ...

    def hold_route(self) -> str | None:
        """The proxy route `hold()` will put into maintenance, or None (not served, stopped, in maintenance)."""

    def hold(self) -> AbstractContextManager[None]: ...


@dataclass
class RestoreResult:
    backup_id: str
    database: str
    safety_backup: str | None
    kept_as: str  # where the data that was live is kept
    held_s: float  # how long requests were held (the proxy answered its maintenance page)
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    hold_phases: dict[str, float] = field(default_factory=dict)  # the hold's time: proxy on, swap, ready, off


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
    guard = app.guard(f"db restore {rec.id}") if app is not None else _own_guard(svc, f"db restore {rec.id}")
    with guard, svc.lock(spec, f"restore {rec.id}"):
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        journal = Journal(AppState(svc.state_root, svc.t.app, svc.t.environment).dir)
        live = spec.database
        plan = {"database": spec.name, "engine": spec.engine, "backup": rec.id,
                "backup_started_at": rec.started_at, "live": live, "new": f"{live}_restore_{stamp}",
                "old": f"{live}_before_restore_{stamp}", "kept": f"before_restore_{stamp}",
                "incoming": f"/data/incoming-{stamp}.rdb",
                "hold_route": app.hold_route() if app is not None else None}
        op = journal.begin("restore", plan, by=operator(), started_at=now_iso())
        faults.point("restore:begin")
        run = _Run(svc, rec, spec, identities, app, journal, op)
        try:
            if isinstance(spec.dialect, Redis):
                safety = svc.backup_locked(spec, reason=f"before restore of {rec.id}")
                journal.step(op, "safety")
                faults.point("restore:safety")
                kept, counts = run.redis()
            else:
                kept, counts, safety = run.sql(RestoreFailed, before_swap)
        except BaseException as exc:
            journal.end(op, "finished" if op.done("swapped") else "undone",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise
        journal.end(op, "finished")
    return RestoreResult(rec.id, spec.name, safety.id, kept, round(run.held_s, 3),
                         round(time.monotonic() - started, 3), counts, dict(getattr(app, "phases", {}) or {}))


@contextmanager
def _own_guard(svc: BackupService, what: str) -> Iterator[None]:
    """Without an app to speak of (no deployer): the environment's deploy lock, and an interrupted restore finished
    or undone first."""
    from headway.proxy.nginx import Proxy

    state = AppState(svc.state_root, svc.t.app, svc.t.environment)
    with state.lock(what, wait=svc.t.deploy.lock_wait):
        op = Journal(state.dir).open_operation()
        if op is not None and op.kind == "restore":
            svc.report.info(recover_restore(svc, op, Proxy(svc.engine, svc.state_root)))
        yield


class _Run:
    """One restore under way: its journal operation, and how long requests were held."""

    def __init__(self, svc: BackupService, rec: BackupRecord, spec: DatabaseSpec, identities: list[Any] | None,
                 app: AppControl | None, journal: Journal, op: Operation) -> None:
        self.svc, self.rec, self.spec, self.identities, self.app = svc, rec, spec, identities, app
        self.journal, self.op = journal, op
        self.held_s = 0.0

    @contextmanager
    def held(self) -> Iterator[None]:
        self.journal.step(self.op, "hold")  # before the proxy is told: a kill from here on releases the hold
        t0 = time.monotonic()
        with self.app.hold() if self.app is not None else _nothing():
            faults.point("restore:held")
            yield
        self.held_s = time.monotonic() - t0
        faults.point("restore:released")

    def swapped(self, kept_as: str) -> None:
        """The restored data is live: written down before anything else happens."""
        RestoreLog(self.svc.state_root, self.svc.t.app, self.svc.t.environment).record(
            RestoreEntry(database=self.spec.name, backup=self.rec.id, backup_started_at=self.rec.started_at,
                         kept_as=kept_as))
        self.journal.step(self.op, "swapped")

    # -- PostgreSQL, MariaDB, MySQL -------------------------------------------------------------------------
    def sql(self, failed: type[HeadwayError], before_swap: Callable[[str, str], None] | None
            ) -> tuple[str, dict[str, int], BackupRecord]:
        svc, rec, spec, plan = self.svc, self.rec, self.spec, self.op.plan
        dialect = spec.dialect
        live, new, old = plan["live"], plan["new"], plan["old"]
        with svc.dbs.tools(spec) as cid:
            ep = svc.dbs.endpoint(spec)
            admin = dialect.admin_database(ep)
            checked = f" (checksum{', decryption' if rec.encrypted else ''} checked on the way)" \
                if isinstance(dialect, Postgres) else ""
            with svc.report.step(f"restore {rec.id} into a new database {new}{checked}"):
                svc.dbs.run_sql(dialect, cid, dialect.create_sql(new), admin, ep)
                faults.point("restore:created")
                try:
                    svc.restore_into(rec, cid, ep, new, self.identities)
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
            self.journal.step(self.op, "restored")
            faults.point("restore:restored")
            try:  # once the backup proved whole and the copy matches: the live data as it is now
                safety = svc.backup_locked(spec, reason=f"before restore of {rec.id}")
            except BaseException:
                _drop_quietly(svc, dialect, cid, new, admin, ep)
                raise
            self.journal.step(self.op, "safety")
            faults.point("restore:safety")
            with svc.report.step(f"swap {new} in as {live} (the old data stays as {old})") as step:
                with self.held():
                    try:
                        if isinstance(dialect, Postgres):
                            _swap_postgres(svc, dialect, cid, ep, live, new, old)
                        elif isinstance(dialect, MariaDB):
                            _swap_mysql(svc, dialect, cid, ep, live, new, old)
                    except BaseException:
                        if not _sql_swapped(svc, dialect, cid, ep, self.op):
                            _undo_sql(svc, dialect, cid, ep, self.op)
                            raise
                        svc.report.info("warning: the swap reported an error, but the restored data is live")
                    self.swapped(old)
                    faults.point("restore:swapped")
                step.detail = f"requests held {self.held_s:.2f}s" if self.app is not None else ""
            try:  # the restored data is live: nothing here may undo that
                with svc.report.step("drop data kept by earlier restores"):
                    _drop_earlier(svc, dialect, cid, ep, live, old)
            except HeadwayError as exc:
                svc.report.info(f"warning: data kept by earlier restores was not dropped: {exc.message}")
        return old, counts, safety

    # -- Redis ----------------------------------------------------------------------------------------------
    def redis(self) -> tuple[str, dict[str, int]]:
        """Redis keeps one dataset per server: the snapshot is written beside the live files, checked by loading
        it in a scratch server, then swapped in while the live server restarts (requests held meanwhile)."""
        svc, rec, spec, plan = self.svc, self.rec, self.spec, self.op.plan
        engine = svc.engine
        live = svc.dbs.require_running(spec)
        dialect = spec.dialect
        assert isinstance(dialect, Redis)
        kept, incoming = plan["kept"], plan["incoming"]
        helper = _redis_helper(svc, spec, live.attrs["Config"]["Image"])
        try:
            engine.start(helper)
            hid = helper.id or ""
            with svc.report.step(f"restore {rec.id} beside the live data and load it in a scratch server"):
                svc.restore_into(rec, hid, Endpoint("", 0, "", "", "0"), incoming, self.identities)
                counts = _load_check(svc, hid, dialect, incoming)
                problems = compare_counts(rec.counts, rec.counts_after, counts)
                if problems:
                    _sh(svc, hid, f'rm -f "{incoming}"')
                    raise HeadwayError(f"the restored snapshot does not match the backup: "
                                       f"{'; '.join(problems[:5])}", "the live data is untouched")
            self.journal.step(self.op, "restored")
            faults.point("restore:restored")
            try:
                with svc.report.step(f"swap the snapshot in (the old data stays in /data/{kept})"), self.held():
                    engine.stop(live, 30)  # redis saves its dataset on the way down: that is what gets kept
                    faults.point("restore:stopped")
                    _sh(svc, hid,
                        f'set -e; mkdir -p /data/{kept}; '
                        f'for f in /data/* /data/.[!.]*; do [ -e "$f" ] || continue; case "$f" in '
                        f'/data/before_restore_*|{incoming}|{incoming}.partial) ;; *) mv "$f" /data/{kept}/ ;; '
                        f'esac; done; mv "{incoming}" /data/dump.rdb; chown redis:redis /data/dump.rdb')
                    self.swapped(f"/data/{kept} in {spec.volume_name}")
                    faults.point("restore:swapped")
                    engine.start(live)
                    svc.dbs._wait_healthy([(live, spec)])
            except BaseException:
                _redis_settle(svc, spec, hid, self.op)
                raise
            _sh(svc, hid, f'for d in /data/before_restore_*; do [ "$d" = /data/{kept} ] || rm -rf "$d"; done')
        finally:
            engine.remove(helper)
        return f"/data/{kept} in {spec.volume_name}", counts


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _swap_postgres(svc: BackupService, dialect: Postgres, cid: str, ep: Endpoint, live: str, new: str,
                   old: str) -> None:
    """Refuse new sessions on the live database, terminate its sessions and wait until they are gone, rename both:
    one psql session, one exec. A client that got in between (mid-authentication) is terminated once more."""
    statements = dialect.swap_sql(live, new, old)
    deadline = time.monotonic() + 30
    argv = dialect.script_argv("postgres", statements)
    while True:
        code, _, err = exec_stream.run(svc.engine.client, cid, argv, env=dialect.tool_env(ep))
        if code == 0:
            return
        if "being accessed by other users" not in err or time.monotonic() > deadline:
            raise HeadwayError(f"the swap of {new} in as {live} failed (exit {code})",
                               "the live database was put back as it was; see the database's message above",
                               details=err.replace(ep.password, "***") if ep.password else err)
        argv = dialect.script_argv("postgres", statements[1:])
        time.sleep(0.05)  # a session was still there: terminate again


def _swap_mysql(svc: BackupService, dialect: MariaDB, cid: str, ep: Endpoint, live: str, new: str,
                old: str) -> None:
    tables_live = [r[0] for r in svc.dbs.run_sql(dialect, cid, dialect.tables_sql(live), "mysql", ep)]
    tables_new = [r[0] for r in svc.dbs.run_sql(dialect, cid, dialect.tables_sql(new), "mysql", ep)]
    svc.dbs.run_sql(dialect, cid, dialect.create_sql(old), "mysql", ep)
    if tables_live or tables_new:
        svc.dbs.run_sql(dialect, cid, dialect.swap_sql(live, new, old, tables_live, tables_new), "mysql", ep)
    svc.dbs.run_sql(dialect, cid, dialect.drop_sql(new), "mysql", ep)


def _names(svc: BackupService, dialect: Any, cid: str, ep: Endpoint) -> list[str]:
    return [r[0] for r in svc.dbs.run_sql(dialect, cid, dialect.list_databases_sql(),
                                          dialect.admin_database(ep), ep) if r]


def _sql_swapped(svc: BackupService, dialect: Any, cid: str, ep: Endpoint, op: Operation) -> bool:
    """Is the restored data live? Read from the server: the renames are atomic, so the answer is yes or no."""
    plan = op.plan
    names = _names(svc, dialect, cid, ep)
    if isinstance(dialect, Postgres):
        return plan["old"] in names and plan["new"] not in names
    if plan["new"] in names:  # MariaDB: RENAME TABLE moved every table at once, then the empty schema is dropped
        if not op.done("restored"):
            return False
        return not svc.dbs.run_sql(dialect, cid, dialect.tables_sql(plan["new"]), "mysql", ep)
    return plan["old"] in names


def _undo_sql(svc: BackupService, dialect: Any, cid: str, ep: Endpoint, op: Operation) -> None:
    """Not swapped: the copy goes, the live database takes sessions again (it was never written to)."""
    plan = op.plan
    names = _names(svc, dialect, cid, ep)
    admin = dialect.admin_database(ep)
    if plan["new"] in names:
        _drop_quietly(svc, dialect, cid, plan["new"], admin, ep)
    if isinstance(dialect, Postgres):
        if plan["live"] in names:
            svc.dbs.run_sql(dialect, cid, dialect.unswap_sql(plan["live"]), admin, ep)
    elif plan["old"] in names and not svc.dbs.run_sql(dialect, cid, dialect.tables_sql(plan["old"]), "mysql", ep):
        _drop_quietly(svc, dialect, cid, plan["old"], admin, ep)  # the empty schema made for the swap


def _drop_earlier(svc: BackupService, dialect: Any, cid: str, ep: Endpoint, live: str, keep: str) -> None:
    admin = dialect.admin_database(ep)
    for name in _names(svc, dialect, cid, ep):
        if name.startswith(f"{live}_before_restore_") and name != keep:
            _drop_quietly(svc, dialect, cid, name, admin, ep)


def _drop_quietly(svc: BackupService, dialect: Any, cid: str, name: str, admin: str, ep: Endpoint) -> None:
    try:
        svc.dbs.run_sql(dialect, cid, dialect.drop_sql(name), admin, ep)
    except HeadwayError as exc:
        svc.report.info(f"warning: could not drop {name}: {exc.message}")


def _redis_helper(svc: BackupService, spec: DatabaseSpec, image: str) -> Any:
    return svc.engine.create(
        name=f"{spec.container_name}-restore-{uuid.uuid4().hex[:6]}", image=image,
        command=["sleep", "infinity"], env={},
        labels=L.owned("oneoff", app=svc.t.app, environment=svc.t.environment, role=spec.name),
        network=None, restart=False, volumes={spec.volume_name: {"bind": "/data", "mode": "rw"}})


def _redis_settle(svc: BackupService, spec: DatabaseSpec, hid: str, op: Operation) -> bool:
    """After a failure or a kill: read from the volume whether the snapshot went in, put the live files back if
    it went in only half-way, and make sure the server runs. Returns whether the restored snapshot is live."""
    kept, incoming = op.plan["kept"], op.plan["incoming"]
    out = _sh(svc, hid,
              f'if [ -d /data/{kept} ] && [ ! -e "{incoming}" ]; then echo swapped; '
              f'elif [ -d /data/{kept} ]; then for f in /data/{kept}/* /data/{kept}/.[!.]*; do [ -e "$f" ] && '
              f'mv "$f" /data/; done; rmdir /data/{kept}; rm -f "{incoming}" "{incoming}.partial"; echo undone; '
              f'else rm -f "{incoming}" "{incoming}.partial"; echo undone; fi')
    live = svc.dbs.container(spec)
    if live is not None and not svc.engine.state(live).get("Running"):
        svc.engine.start(live)
        svc.dbs._wait_healthy([(live, spec)])
    return out.strip().endswith("swapped")


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


# -- requests held for the swap ---------------------------------------------------------------------------------
def set_hold(proxy: Proxy, key: str, on: bool) -> bool:
    """Hold (on) or let through (off) the requests of route `key`: its maintenance page, as routing data, so no
    reload and no client connection closed. Only a hold a restore made is let through (its message says so); a
    maintenance window someone turned on stays. Returns whether the routing changed."""
    from headway.proxy.nginx import maintenance_page
    from headway.proxy.routes import Route, RouteMaintenance

    route = proxy.routes.all().get(key)
    if route is None:
        return False
    if on and route.maintenance is not None:
        return False
    if not on and (route.maintenance is None or route.maintenance.message != RESTORE_MESSAGE):
        return False
    if on:
        proxy.set_maintenance_page(key, maintenance_page(RESTORE_MESSAGE))

    def change(routes: dict[str, Route]) -> None:
        current = routes.get(key)
        if current is None:
            return
        if on:  # the rules the config was rendered with (exempt health path, Retry-After): routing alone changes
            rules = current.maintenance_rules or RouteMaintenance(message="")
            state = rules.model_copy(update={"message": RESTORE_MESSAGE, "allow": [], "since": now_iso()})
            routes[key] = current.model_copy(update={"maintenance": state})
        elif current.maintenance is not None and current.maintenance.message == RESTORE_MESSAGE:
            routes[key] = current.model_copy(update={"maintenance": None})

    proxy.apply(change)
    return True


# -- an interrupted restore ---------------------------------------------------------------------------------------
def recover_restore(svc: BackupService, op: Operation, proxy: Proxy | None) -> str:
    """Finish or undo a restore whose process died, from what the database holds; then let the requests through.
    Ends the operation and says what was done. Called under the environment's deploy lock."""
    plan = op.plan
    journal = Journal(AppState(svc.state_root, svc.t.app, svc.t.environment).dir)
    name = str(plan.get("database", ""))
    spec = svc.dbs.specs.get(name)
    swapped = False
    if spec is None:
        note = f"an interrupted restore of {name}: the database is no longer in headway.yml; nothing to do"
    else:
        with svc.lock(spec, "recover an interrupted restore", wait=30):
            swapped = _recover_data(svc, spec, op)
        if swapped and not op.done("swapped"):
            RestoreLog(svc.state_root, svc.t.app, svc.t.environment).record(
                RestoreEntry(database=spec.name, backup=str(plan["backup"]),
                             backup_started_at=str(plan.get("backup_started_at", "")), kept_as=str(plan["old"])))
        _close_safety_backup(svc, op)
        note = (f"an interrupted restore of {plan['backup']} into {name} had swapped the data in: finished it "
                f"(the data before is kept as {plan['old'] if spec.engine != 'redis' else plan['kept']})"
                if swapped else
                f"an interrupted restore of {plan['backup']} into {name} had not swapped: {name} holds the data "
                "it had; the copy was dropped")
    key = plan.get("hold_route")
    if key and proxy is not None and set_hold(proxy, str(key), False):
        note += "; requests held for the swap are let through again"
    journal.end(op, "recovered", "finished" if swapped else "undone")
    return note


def _recover_data(svc: BackupService, spec: DatabaseSpec, op: Operation) -> bool:
    if isinstance(spec.dialect, Redis):
        live = svc.dbs.container(spec)
        if live is None:
            return False
        for c in svc.engine.containers(L.selector(app=svc.t.app, environment=svc.t.environment, kind="oneoff",
                                                  role=spec.name)):
            if (c.name or "").startswith(f"{spec.container_name}-restore-"):
                svc.engine.remove(c)
        helper = _redis_helper(svc, spec, live.attrs["Config"]["Image"])
        try:
            svc.engine.start(helper)
            swapped = _redis_settle(svc, spec, helper.id or "", op)
            if swapped:
                kept = op.plan["kept"]
                _sh(svc, helper.id or "",
                    f'for d in /data/before_restore_*; do [ "$d" = /data/{kept} ] || rm -rf "$d"; done')
            return swapped
        finally:
            svc.engine.remove(helper)
    with svc.dbs.tools(spec) as cid:
        ep = svc.dbs.endpoint(spec)
        if _sql_swapped(svc, spec.dialect, cid, ep, op):
            names = _names(svc, spec.dialect, cid, ep)
            if op.plan["new"] in names:  # MariaDB: the emptied schema
                _drop_quietly(svc, spec.dialect, cid, op.plan["new"], spec.dialect.admin_database(ep), ep)
            _drop_earlier(svc, spec.dialect, cid, ep, op.plan["live"], op.plan["old"])
            return True
        _undo_sql(svc, spec.dialect, cid, ep, op)
        return False


def _close_safety_backup(svc: BackupService, op: Operation) -> None:
    """A safety backup the kill interrupted is recorded as failed (never good, never shown as running)."""
    reason = f"before restore of {op.plan['backup']}"
    for rec in svc.catalog.all(str(op.plan.get("database"))):
        if rec.status == "running" and rec.reason == reason and rec.started_at >= op.started_at:
            svc.catalog.record(rec.model_copy(update={"status": "failed", "finished_at": now_iso(),
                                                      "error": "interrupted: headway stopped during it"}))
