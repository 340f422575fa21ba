"""A migration rehearsal: the new release's release command run against a throwaway copy of production's data.

`headway rehearse -e ENV` (and `headway deploy` with `deploy: {rehearse: true}`) builds or pulls the release image
exactly as a deploy would, restores the newest good backup of each SQL database into a throwaway database server
(data/verify.py's Scratch) on a throwaway network, and runs the release command there in a one-off container whose
env points at those copies only. While it runs, PostgreSQL's `pg_locks` is polled for the locks that stop other
sessions (ACCESS EXCLUSIVE, EXCLUSIVE, SHARE ROW EXCLUSIVE, SHARE) on tables; before and after it, the schema is
dumped and each table's storage identity is read (`pg_class.relfilenode`, InnoDB's table id: a statement that
rewrites a table gives it new storage). The command then runs a second time on the same copy: a release command
must be safe to run twice (a deploy retried after a failure runs it again).

Nothing live is touched: no container, network, volume or route of the environment, and the live databases are
never read (only their backups). Everything the rehearsal creates carries the `dev.headway.rehearsal` label and
is removed at the end, on failure and on Ctrl-C too; a rehearsal killed outright leaves debris that the next
rehearsal or `headway recover` removes by that label.
"""

from __future__ import annotations

import difflib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from headway.config.rehearse import thresholds
from headway.data.verify import SCRATCH, Scratch
from headway.engine import labels as L
from headway.errors import ConfigError, HeadwayError, LockHeld, NotFound, ReleaseCommandFailed
from headway.state.files import atomic_write
from headway.state.store import hold_lock, now_iso

if TYPE_CHECKING:
    from headway.data.backup import BackupService
    from headway.data.catalog import BackupRecord
    from headway.data.databases import DatabaseSpec
    from headway.engine.docker import DockerEngine
    from headway.service import Headway

LABEL = f"{L.PREFIX}.rehearsal"  # the run id, on every container, network and image tag a rehearsal makes
ROLE = "rehearsal"  # the role label of its containers (reconcile's debris sweep leaves them to this module)
REPORT = "rehearsal.json"  # in apps/APP/ENV/: the last rehearsal's outcome (`headway doctor` reads it)
POLL_S = 0.05  # how often pg_locks is read while the release command runs
HEAVY_MODES = ("AccessExclusiveLock", "ExclusiveLock", "ShareRowExclusiveLock", "ShareLock")
_WAITS = {"AccessExclusiveLock": ("exclusive lock", "every read and write of it waits"),
          "ExclusiveLock": ("exclusive lock", "every write of it waits"),
          "ShareRowExclusiveLock": ("share row exclusive lock", "every write of it waits"),
          "ShareLock": ("share lock", "every write of it waits")}


# -- what a rehearsal finds (plain data, unit-tested) ---------------------------------------------------------
@dataclass(frozen=True)
class TableFact:
    """A table before the release command ran: rows (exact, counted at restore), bytes, storage identity."""

    rows: int
    bytes: int
    storage: str  # relfilenode (PostgreSQL) or InnoDB table id; "" when unknown


@dataclass(frozen=True)
class LockSample:
    pid: int
    table: str
    mode: str
    statement: str


@dataclass
class LockObservation:
    database: str
    table: str
    mode: str
    held_s: float  # the longest time it was seen held (from the first poll that saw it to the last)
    statement: str  # what the session was running when the lock was first seen
    rows: int | None = None
    bytes: int | None = None


@dataclass(frozen=True)
class Finding:
    kind: str  # lock | rewrite
    database: str
    table: str
    text: str


class LockTracker:
    """Heavy locks seen across polls: each (session, table, mode) held from the poll that first saw it to the last
    poll that still did; the longest such span per table and mode is what is reported."""

    def __init__(self, database: str) -> None:
        self.database = database
        self._open: dict[tuple[int, str, str], tuple[float, float, str]] = {}
        self._best: dict[tuple[str, str], LockObservation] = {}
        self.polls = 0

    def observe(self, at: float, samples: list[LockSample]) -> None:
        self.polls += 1
        seen = set()
        for s in samples:
            key = (s.pid, s.table, s.mode)
            seen.add(key)
            first, _, statement = self._open.get(key, (at, at, s.statement))
            self._open[key] = (first, at, statement)
        for key in [k for k in self._open if k not in seen]:
            self._close(key)

    def _close(self, key: tuple[int, str, str]) -> None:
        first, last, statement = self._open.pop(key)
        _, table, mode = key
        held = round(last - first, 3)
        best = self._best.get((table, mode))
        if best is None or held > best.held_s:
            self._best[(table, mode)] = LockObservation(self.database, table, mode, held, statement)

    def observations(self) -> list[LockObservation]:
        for key in list(self._open):
            self._close(key)
        return sorted(self._best.values(), key=lambda o: (-o.held_s, o.table, o.mode))


def rewritten(before: dict[str, TableFact], after: dict[str, str]) -> list[str]:
    """Tables present before and after whose storage identity changed: the statement rewrote them."""
    return sorted(t for t, fact in before.items()
                  if fact.storage and after.get(t) and after[t] != fact.storage)


def is_big(fact: TableFact | None, rows_limit: int, bytes_limit: int) -> bool:
    return fact is not None and (fact.rows > rows_limit or fact.bytes > bytes_limit)


def size_text(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1000  # type: ignore[assignment]
    return f"{n} B"


def _about(fact: TableFact | None) -> str:
    if fact is None:
        return ""
    return f" ({fact.rows:,} rows, {size_text(fact.bytes)})"


def analyse(database: str, tables: dict[str, TableFact], locks: list[LockObservation], rewrites: list[str],
            rows_limit: int, bytes_limit: int) -> list[Finding]:
    """The findings worth stopping for: a heavy lock held on a big table, a big table rewritten. Tables made by
    the release command itself (not there before) are never flagged: nobody else uses them yet."""
    out = []
    strongest: dict[str, int] = {}  # per table, the heaviest mode seen: a weaker one on it adds nothing
    for lock in locks:
        if lock.mode in HEAVY_MODES:
            strongest[lock.table] = min(strongest.get(lock.table, 99), HEAVY_MODES.index(lock.mode))
    for lock in locks:
        fact = tables.get(lock.table)
        lock.rows, lock.bytes = (fact.rows, fact.bytes) if fact else (None, None)
        if lock.mode not in _WAITS or not is_big(fact, rows_limit, bytes_limit) \
                or HEAVY_MODES.index(lock.mode) != strongest[lock.table]:
            continue
        what, waits = _WAITS[lock.mode]
        out.append(Finding("lock", database, lock.table, f"{what} on {lock.table}{_about(fact)} for "
                           f"{lock.held_s:.1f}s — {waits}" + (f" (`{_short(lock.statement)}`)"
                                                               if lock.statement else "")))
    for table in rewrites:
        fact = tables.get(table)
        if is_big(fact, rows_limit, bytes_limit):
            out.append(Finding("rewrite", database, table, f"rewrote {table}{_about(fact)}: the whole table was "
                               "copied, holding its lock all along"))
    return out


def _short(statement: str, width: int = 120) -> str:
    text = " ".join(statement.split())
    return text if len(text) <= width else text[: width - 1] + "…"


_PG_NOISE = re.compile(r"^(--|SET |SELECT pg_catalog\.set_config\(|\\restrict |\\unrestrict )")
_MY_NOISE = re.compile(r"^(--|/\*![0-9]{5} SET |/\*!40101 SET |/\*M!999999\\- |SET @|LOCK TABLES|UNLOCK TABLES)")


def normalize_schema(engine: str, text: str) -> list[str]:
    """A schema dump without what differs between two dumps of the same schema: comments, session settings,
    pg_dump's per-dump \\restrict key, MariaDB's AUTO_INCREMENT counters; blank lines collapsed."""
    noise = _PG_NOISE if engine == "postgres" else _MY_NOISE
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if noise.match(line):
            continue
        if engine != "postgres":
            line = re.sub(r" AUTO_INCREMENT=\d+", "", line)
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def schema_diff(before: list[str], after: list[str]) -> str:
    """A unified diff of two normalized schema dumps; empty when the schema did not change."""
    return "\n".join(difflib.unified_diff(before, after, "schema before", "schema after", lineterm="", n=2))


# -- the report ------------------------------------------------------------------------------------------
@dataclass
class DatabaseResult:
    name: str
    engine: str
    backup: str | None  # the backup restored; None: an empty database (--allow-empty)
    schema_diff: str = ""
    rewrites: list[str] = field(default_factory=list)
    locks: list[LockObservation] = field(default_factory=list)
    tables: dict[str, TableFact] = field(default_factory=dict)
    lock_polls: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class RehearsalReport:
    app: str
    environment: str
    version: str | None = None
    image: str | None = None
    rehearsed: bool = True  # False: nothing to rehearse (no SQL database, or no release command)
    ok: bool = True  # the release command's first run exited 0
    exit_code: int | None = None
    timed_out: bool = False
    duration_s: float = 0.0  # the first run
    output_tail: str = ""
    release_twice_ok: bool | None = None
    second_duration_s: float | None = None
    second_output_tail: str = ""
    databases: list[DatabaseResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started_at: str = field(default_factory=now_iso)
    finished_at: str = ""

    @property
    def backup(self) -> dict[str, str | None]:
        return {d.name: d.backup for d in self.databases}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["backup"] = self.backup
        for db in data["databases"]:
            db["tables"] = {t: {"rows": f["rows"], "bytes": f["bytes"]} for t, f in db["tables"].items()}
        return data

    def summary(self) -> str:
        if not self.rehearsed:
            return "; ".join(self.notes) or "nothing to rehearse"
        if not self.ok:
            why = "timed out" if self.timed_out else f"exited {self.exit_code}"
            return f"the release command {why} on the copy of {self._copies()}"
        parts = [f"the release command ran in {self.duration_s:.1f}s on the copy of {self._copies()}"]
        if self.findings:
            parts.append(f"{len(self.findings)} finding(s): " + "; ".join(f.text for f in self.findings))
        if self.release_twice_ok is False:
            parts.append("it failed when run a second time: it is not safe to run twice")
        return "; ".join(parts)

    def _copies(self) -> str:
        return ", ".join(f"{d.name} ({d.backup or 'empty'})" for d in self.databases)


# -- the rehearsal --------------------------------------------------------------------------------------
def rehearse(hw: Headway, *, version: str | None = None, image_tag: str | None = None, ref: str | None = None,
             dirty: bool = False, allow_empty: bool = False, backup_id: str | None = None,
             identities: list[Any] | None = None, force: bool = False) -> RehearsalReport:
    """Rehearse the release command of the release a deploy would make now (or of `image_tag`) against copies of
    the newest good backups. Writes apps/APP/ENV/rehearsal.json; raises only for what stopped the rehearsal
    itself (no backup, a build that failed, a damaged backup), never for the release command's own failure."""
    if image_tag is not None and (ref is not None or dirty):
        raise ConfigError("--image-tag rehearses images built elsewhere; --ref and --dirty choose what is built "
                          "here", "drop --image-tag, or drop --ref/--dirty")
    empty = _nothing_to_rehearse(hw)
    if empty is not None:
        return empty
    choice = choose_backups(hw, backup_id=backup_id, allow_empty=allow_empty, identities=identities)
    if image_tag is not None:
        from headway.release.version import check_version

        check_version(image_tag)
        return run_rehearsal(hw, check_version(version) if version else image_tag, image_tag, choice, identities)
    with hw.source(ref=ref, dirty=dirty, force=force, version=version) as src:
        return run_rehearsal(hw, src.version, None, choice, identities)


def _nothing_to_rehearse(hw: Headway) -> RehearsalReport | None:
    t = hw.target
    report = RehearsalReport(t.app, t.environment, rehearsed=False)
    if not t.config.release_argv:
        report.notes.append(f"nothing to rehearse: {t.app} has no release command (`release:` in headway.yml)")
    elif not any(db.engine != "redis" for db in t.config.databases.values()):
        report.notes.append(f"nothing to rehearse: {t.app} declares no SQL database (`databases:` in headway.yml) "
                            "for the release command to change")
    else:
        return None
    report.finished_at = now_iso()
    _write(hw, report)
    return report


def choose_backups(hw: Headway, *, backup_id: str | None, allow_empty: bool,
                   identities: list[Any] | None) -> dict[str, BackupRecord | None]:
    """For each SQL database: the backup to restore (`backup_id` for its database, else the newest good one), or
    None for an empty one (`allow_empty`, and only when there is no backup)."""
    svc = hw.databases()
    env = hw.target.environment
    specs = [s for s in svc.dbs.specs.values() if s.engine != "redis"]
    chosen: dict[str, BackupRecord | None] = {}
    named = svc.get(backup_id) if backup_id is not None else None
    if named is not None and named.database not in {s.name for s in specs}:
        raise ConfigError(f"backup {backup_id} is of {named.database}, which is not a SQL database of {env}",
                          f"name a backup from `headway db backups -e {env}`")
    for spec in specs:
        if named is not None and named.database == spec.name:
            rec: BackupRecord | None = named
        else:
            rec = svc.latest_good(spec.name) or next(iter(svc.catalog.good(spec.name)), None)
        if rec is None and not allow_empty:
            raise NotFound(f"no good backup of {spec.name} in {env} to rehearse the release command on",
                           f"take one: `headway db backup -e {env} {spec.name}`; or pass --allow-empty to "
                           "rehearse on an empty database")
        if rec is not None and rec.encrypted and not identities:
            raise ConfigError(f"backup {rec.id} is encrypted: restoring it needs the private key",
                              "pass --identity FILE (an age identity file), or HEADWAY_AGE_IDENTITY")
        chosen[spec.name] = rec
    return chosen


def run_rehearsal(hw: Headway, version: str, image_tag: str | None, backups: dict[str, BackupRecord | None],
                  identities: list[Any] | None) -> RehearsalReport:
    """The rehearsal proper, with the source already prepared (`hw.source`) or the images pulled by tag."""
    from headway.data.deploy_hooks import docker_engine
    from headway.release.images import RELEASE, make_images, plan_images

    t = hw.target
    engine = docker_engine(hw.engine)
    svc = hw.databases()
    report = RehearsalReport(t.app, t.environment, version=version)
    report.notes += _backup_notes(hw, svc, backups)
    rows_limit, bytes_limit = thresholds(t.deploy.rehearse)
    run = uuid.uuid4().hex[:8]
    labels = L.owned("oneoff", app=t.app, environment=t.environment, role=ROLE, release=version) | {LABEL: run}
    with _rehearsal_lock(hw), ExitStack() as stack:
        remove_debris(engine, t.app, t.environment)
        stack.callback(remove_debris, engine, t.app, t.environment, run)
        # the images, built or pulled exactly as a deploy would; a version the history already names is built
        # under a throwaway tag, so what a rollback or scale-up of that release runs never changes
        known = {r.version for r in hw.state.history()}
        tag = f"rehearse-{run}" if image_tag is None and version in known else version
        plan = plan_images(t, tag, image_tag)
        made = make_images(plan, t, engine, hw.deployer.build_root, hw.deployer.report)
        report.image = image = made[RELEASE]
        if tag != version:
            stack.callback(_untag, engine, [j.reference for j in plan.jobs if j.build is not None])
        network = f"hw-{t.app}-{t.environment}-rehearse-{run}"
        with hw.deployer.report.step(f"throwaway network and databases ({network})"):
            engine.ensure_network(network, L.owned("network", app=t.app, environment=t.environment) | {LABEL: run})
            scratch_env: dict[str, str] = {}
            copies: list[tuple[_Scratch, DatabaseResult]] = []
            for spec in svc.dbs.specs.values():
                if spec.engine == "redis":
                    scratch_env[spec.url_env] = _empty_redis(engine, spec, network, labels, run)
                    continue
                rec = backups.get(spec.name)
                scratch = stack.enter_context(_Scratch(svc, rec or _empty_record(hw, spec), network=network,
                                                       alias=spec.name, labels=labels, run=run))
                result = DatabaseResult(spec.name, spec.engine, rec.id if rec else None)
                counts = scratch.restore(identities) if rec is not None else {}
                result.tables = _tables(scratch, counts)
                scratch_env[spec.url_env] = scratch.url(spec.name)
                copies.append((scratch, result))
                report.databases.append(result)
        for scratch, result in copies:
            scratch.schema_before = normalize_schema(result.engine, _schema(scratch))
        env = release_env(hw, version, scratch_env, report.notes)
        argv = t.config.release_argv
        assert argv is not None
        first = _run(hw, engine, image, argv, env, network, labels, run, copies, 1)
        report.ok, report.exit_code, report.timed_out = first.ok, first.exit_code, first.timed_out
        report.duration_s, report.output_tail = first.seconds, first.output[-4000:]
        for scratch, result in copies:
            after = normalize_schema(result.engine, _schema(scratch))
            result.schema_diff = schema_diff(scratch.schema_before, after)
            result.rewrites = rewritten(result.tables, _storage(scratch))
            report.findings += analyse(result.name, result.tables, result.locks, result.rewrites, rows_limit,
                                       bytes_limit)
        if first.ok:
            second = _run(hw, engine, image, argv, env, network, labels, run, [], 2)
            report.release_twice_ok, report.second_duration_s = second.ok, second.seconds
            report.second_output_tail = second.output[-4000:]
    report.finished_at = now_iso()
    _write(hw, report)
    return report


def _backup_notes(hw: Headway, svc: BackupService, backups: dict[str, BackupRecord | None]) -> list[str]:
    """Which backups, how old; a warning for one older than the live release (its schema may predate it)."""
    from datetime import datetime

    notes: list[str] = []
    current = hw.state.current().live
    live = next((r for r in hw.state.history() if r.number == current and r.action == "deploy"), None)
    for name, rec in backups.items():
        if rec is None:
            notes.append(f"{name}: no backup, an empty database (--allow-empty)")
            continue
        notes += svc.describe_choice(rec)
        if live is not None and datetime.fromisoformat(rec.started_at) < datetime.fromisoformat(live.started_at):
            notes.append(f"warning: {rec.id} was taken before the live release {live.version} was deployed: its "
                         f"schema may lack that release's migrations (take a fresh one: `headway db backup -e "
                         f"{hw.target.environment} {name}`)")
    return notes


@dataclass
class _Run:
    ok: bool
    exit_code: int
    timed_out: bool
    seconds: float
    output: str


def _run(hw: Headway, engine: DockerEngine, image: str, argv: list[str], env: dict[str, str], network: str,
         labels: dict[str, str], run: str, copies: list[tuple[_Scratch, DatabaseResult]], n: int) -> _Run:
    """The release command in a one-off container on the throwaway network; heavy locks polled meanwhile."""
    t = hw.target
    name = f"{t.app}-{t.environment}-rehearse-{run}-{n}"
    files = t.secret_files(t.role_secrets(None))
    secret_files = hw.deployer.secret_files
    what = "release command" if n == 1 else "release command, second run (is it safe to run twice?)"
    outcome: _Run | None = None
    try:
        with hw.deployer.report.step(f"{what}: {' '.join(argv)}") as step, ExitStack() as stack:
            pollers = [stack.enter_context(_LockPoller(s, r)) for s, r in copies if r.engine == "postgres"]
            started = time.monotonic()
            try:
                result = engine.run_oneoff(name=name, image=image, command=argv, env=env, labels=labels,
                                           network=network, timeout=t.deploy.release_timeout,
                                           on_line=hw.deployer.report.output,
                                           volumes=secret_files.mount(name) if files else None,
                                           prepare=secret_files.preparer(files))
            finally:
                secret_files.remove(name)
            seconds = round(time.monotonic() - started, 3)
            for poller in pollers:
                poller.stop()
            ok = result.exit_code == 0 and not result.timed_out
            step.detail = f"exit {result.exit_code} in {seconds:.1f}s" if not result.timed_out else "timed out"
            outcome = _Run(ok, result.exit_code, result.timed_out, seconds, result.output)
            if not ok:
                raise _Failed  # inside the step: it shows as failed
    except _Failed:
        pass
    assert outcome is not None
    return outcome


class _Failed(Exception):
    """The release command failed: the step shows it; the report says it."""


def release_env(hw: Headway, version: str, scratch_env: dict[str, str], notes: list[str]) -> dict[str, str]:
    """The release command's env as a deploy gives it, with every database URL pointing at its throwaway copy.
    A variable that carries a live database's credentials (a secret an external URL is made of, say) is left
    out; the result is checked to name the copies only."""
    t = hw.target
    env = t.container_env(None, {"HEADWAY_APP": t.app, "HEADWAY_ENVIRONMENT": t.environment,
                                 "HEADWAY_RELEASE": version, "HEADWAY_DEPLOY": "0", "HEADWAY_ROLE": "release",
                                 "HEADWAY_REHEARSAL": "1"}) | scratch_env
    live = _live_passwords(hw)
    withheld = sorted(k for k, v in env.items() if k not in scratch_env and any(p in v for p in live))
    for key in withheld:
        del env[key]
    if withheld:
        notes.append(f"withheld {', '.join(withheld)} from the rehearsal: they carry a live database's credentials")
    for key, value in scratch_env.items():
        if env.get(key) != value or any(p in value for p in live):
            raise HeadwayError(f"the rehearsal's {key} does not point at its throwaway database",
                               "report this; nothing was run")
    return env


def _live_passwords(hw: Headway) -> list[str]:
    """The live databases' passwords as far as this host knows them, without creating anything."""
    from headway.data.credentials import credentials_path
    from headway.data.databases import resolve_databases

    t = hw.target
    out = []
    for spec in resolve_databases(t).values():
        if spec.external_url is not None:
            out.append(spec.dialect.parse_url(spec.external_url).password)
            continue
        path = credentials_path(hw.state.root, t.app, t.environment, spec.name)
        if path.is_file():
            data = json.loads(path.read_text())
            out += [str(data.get("password") or ""), str(data.get("root_password") or "")]
    return [p for p in out if len(p) >= 6]


@contextmanager
def _rehearsal_lock(hw: Headway) -> Iterator[None]:
    with hold_lock(hw.state.dir / "rehearse.lock", "rehearse", 0.0,
                   subject=f"a rehearsal of {hw.target.app}/{hw.target.environment} is running",
                   fix="wait for it to finish, then run it again"):
        yield


def remove_debris(engine: DockerEngine, app: str, environment: str, run: str | None = None) -> list[str]:
    """Remove what rehearsals of app/environment left (all of them, or run `run`'s): containers with their
    anonymous volumes, networks, throwaway image tags. The names of what was removed."""
    label = LABEL if run is None else f"{LABEL}={run}"
    removed = []
    for c in engine.containers(L.selector(app=app, environment=environment) + [label]):
        engine.remove(c, volumes=True)
        removed.append(c.name or c.id)
    for net in engine.client.networks.list(filters={"label": [f"{L.APP}={app}", f"{L.ENVIRONMENT}={environment}",
                                                              label]}):
        removed.append(net.name)
        engine.remove_network(net.name)
    for image in engine.images(L.selector(app=app)):
        for ref in image["tags"]:
            if ref.rpartition(":")[2].startswith(f"rehearse-{run or ''}"):
                engine.remove_image(ref)
                removed.append(ref)
    return removed


def remove_debris_unless_running(hw: Headway) -> list[str]:
    """`headway recover`: what a killed rehearsal left, unless a rehearsal is running now."""
    from headway.data.deploy_hooks import docker_engine

    if not hw.target.config.databases:
        return []
    try:
        with _rehearsal_lock(hw):
            removed = remove_debris(docker_engine(hw.engine), hw.target.app, hw.target.environment)
    except LockHeld:
        return []
    return [f"removed what an interrupted rehearsal left: {', '.join(sorted(removed))}"] if removed else []


def _untag(engine: DockerEngine, refs: list[str]) -> None:
    for ref in refs:
        engine.remove_image(ref)


def _write(hw: Headway, report: RehearsalReport) -> None:
    data = {"finished_at": report.finished_at, "ok": report.ok, "release_twice_ok": report.release_twice_ok,
            "rehearsed": report.rehearsed, "version": report.version, "image": report.image,
            "backup": report.backup, "duration_s": report.duration_s,
            "findings": [asdict(f) for f in report.findings], "notes": report.notes,
            "rewrites": {d.name: d.rewrites for d in report.databases},
            "schema_changed": {d.name: bool(d.schema_diff) for d in report.databases}}
    hw.state.dir.mkdir(parents=True, exist_ok=True)
    atomic_write(hw.state.dir / REPORT, json.dumps(data, indent=2) + "\n", mode=0o600)


# -- before a deploy -------------------------------------------------------------------------------------
def rehearse_before_deploy(hw: Headway, version: str, image_tag: str | None, strict: bool) -> RehearsalReport:
    """`deploy: {rehearse: true}`: rehearse the release about to be deployed (source already prepared); a failed
    rehearsal stops the deploy before anything live changed, and with `strict` flagged findings do too."""
    report_to = hw.deployer.report
    empty = _nothing_to_rehearse(hw)
    if empty is not None:
        report_to.info(f"rehearsal: {empty.summary()}")
        return empty
    first_deploy = hw.state.current().live is None  # its databases hold nothing yet: an empty copy is the truth
    choice = choose_backups(hw, backup_id=None, allow_empty=first_deploy, identities=None)
    report = run_rehearsal(hw, version, image_tag, choice, None)
    env = hw.target.environment
    again = f"see it with `headway rehearse -e {env}`"
    for note in report.notes:
        report_to.info(f"rehearsal: {note}")
    if not report.ok:
        raise ReleaseCommandFailed(f"rehearsal of {version} failed: {report.summary()}; nothing was deployed",
                                   f"fix the release command or its migration ({again}); the live release and "
                                   "its data are unchanged", details=report.output_tail)
    for finding in report.findings:
        report_to.info(f"warning: rehearsal: {finding.text}")
    if report.release_twice_ok is False:
        report_to.info("warning: rehearsal: the release command failed when run a second time (not idempotent)")
    if strict and (report.findings or report.release_twice_ok is False):
        raise ReleaseCommandFailed(f"rehearsal of {version} flagged the release command: {report.summary()}; "
                                   "nothing was deployed",
                                   "make the migration lighter (e.g. CREATE INDEX CONCURRENTLY, a new column "
                                   "filled in batches) and safe to run twice, or set `deploy: {rehearse: true}` "
                                   f"to deploy with warnings ({again})")
    return report


# -- the throwaway databases ------------------------------------------------------------------------------
class _Scratch(Scratch):
    """data/verify.py's throwaway database server, on the rehearsal's network under the database's own name."""

    def __init__(self, svc: BackupService, rec: BackupRecord, *, network: str, alias: str, labels: dict[str, str],
                 run: str) -> None:
        super().__init__(svc, rec)
        self.network, self.alias, self.labels, self.run = network, alias, labels, run
        self.schema_before: list[str] = []

    def __enter__(self) -> _Scratch:
        engine = self.svc.engine
        engine.require_image(self.rec.image, f"the rehearsal of {self.rec.database}")
        self.container = engine.create(
            name=f"{self.rec.app}-{self.rec.environment}-{self.rec.database}-rehearse-{self.run}",
            image=self.rec.image, command=None,
            env=self.dialect.container_env(SCRATCH, "headway", self.password, self.password),
            labels=self.labels, network=self.network, aliases=[self.alias], restart=False)
        try:
            engine.start(self.container)
            self._wait(self.dialect.health_command(SCRATCH, "headway"), 120, "the throwaway database to start")
        except BaseException:
            self.__exit__()
            raise
        return self

    def url(self, host: str) -> str:
        return self.dialect.url(host, self.dialect.port, "headway", self.password, SCRATCH)


def _empty_record(hw: Headway, spec: DatabaseSpec) -> BackupRecord:
    """What an empty throwaway database is made from (--allow-empty): the database's own image, no backup."""
    from headway.data.catalog import BackupRecord

    return BackupRecord(id="(empty)", app=hw.target.app, environment=hw.target.environment, database=spec.name,
                        engine=spec.engine, image=spec.image, format="", key="")


def _empty_redis(engine: DockerEngine, spec: DatabaseSpec, network: str, labels: dict[str, str], run: str) -> str:
    """An empty Redis on the rehearsal's network for a release command that expects one; its URL."""
    engine.require_image(spec.image, f"the rehearsal of {spec.name}")
    c = engine.create(name=f"{labels[L.APP]}-{labels[L.ENVIRONMENT]}-{spec.name}-rehearse-{run}", image=spec.image,
                      command=["redis-server", "--save", "", "--appendonly", "no"], env={}, labels=labels,
                      network=network, aliases=[spec.name], restart=False)
    engine.start(c)
    return f"redis://{spec.name}:{spec.dialect.port}/0"


def _exec(scratch: Any, argv: list[str]) -> str:
    from headway.engine import exec_stream

    ep = scratch.endpoint
    code, out, err = exec_stream.run(scratch.svc.engine.client, scratch.container.id, argv,
                                     env=scratch.dialect.tool_env(ep), timeout=300)
    if code != 0:
        raise HeadwayError(f"{argv[0]} on the throwaway database failed (exit {code})",
                           "see its message above", details=err.replace(ep.password, "***")[-2000:])
    return str(out)


def _schema(scratch: Any) -> str:
    if scratch.rec.engine == "postgres":
        return _exec(scratch, ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", "--dbname", SCRATCH])
    ep = scratch.endpoint
    return _exec(scratch, [scratch.dialect.dumper, f"--user={ep.user}", "--no-data", "--skip-comments",
                           "--routines", "--triggers", "--events", SCRATCH])


_PG_TABLES = ("SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relfilenode, "
              "pg_total_relation_size(c.oid), greatest(c.reltuples, 0)::bigint "
              "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm') "
              "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'")


def _tables(scratch: Any, counts: dict[str, int]) -> dict[str, TableFact]:
    """Each table's rows (counted at restore), bytes and storage identity, before the release command runs."""
    out = {}
    if scratch.rec.engine == "postgres":
        for name, node, size, estimate in scratch.query(_PG_TABLES):
            out[name] = TableFact(counts.get(name, int(estimate)), int(size), node)
        return out
    storage = _storage(scratch)
    rows = scratch.query("SELECT table_name, COALESCE(table_rows, 0), COALESCE(data_length, 0) + "
                         "COALESCE(index_length, 0) FROM information_schema.tables WHERE table_schema = "
                         f"'{SCRATCH}' AND table_type = 'BASE TABLE'")
    for name, estimate, size in rows:
        out[name] = TableFact(counts.get(name, int(estimate)), int(size), storage.get(name, ""))
    return out


def _storage(scratch: Any) -> dict[str, str]:
    """Table -> its storage identity now: relfilenode, or InnoDB's table id (a rebuilt table gets a new one)."""
    if scratch.rec.engine == "postgres":
        return {row[0]: row[1] for row in scratch.query(_PG_TABLES)}
    source = "INNODB_TABLES" if scratch.rec.engine == "mysql" else "INNODB_SYS_TABLES"
    try:
        rows = scratch.query(f"SELECT NAME, TABLE_ID FROM information_schema.{source} "
                             f"WHERE NAME LIKE '{SCRATCH}/%'")
    except HeadwayError:
        return {}
    return {name.partition("/")[2]: table_id for name, table_id in rows}


_LOCKS = ("SELECT l.pid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), l.mode, "
          "translate(left(coalesce(a.query, ''), 400), E'\\n\\t\\r', '   ') "
          "FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
          "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
          "WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid() "
          "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
          f"AND l.mode IN ({', '.join(repr(m) for m in HEAVY_MODES)}) AND c.relkind IN ('r', 'p', 'm') "
          "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'")


class _LockPoller:
    """A psql session on the throwaway PostgreSQL reading pg_locks every POLL_S while the release command runs.
    It reads catalogs only (never a user table, which a held lock would make it wait on)."""

    MARK = "__headway_polled__"

    def __init__(self, scratch: Any, result: DatabaseResult) -> None:
        self.scratch, self.result = scratch, result
        self.tracker = LockTracker(result.name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: Any = None
        self._buf = b""
        self.error: str | None = None

    def __enter__(self) -> _LockPoller:
        from headway.engine.exec_stream import ExecProcess

        s = self.scratch
        self._proc = ExecProcess(s.svc.engine.client, s.container.id, s.dialect.session_argv(s.endpoint, SCRATCH),
                                 env=s.dialect.tool_env(s.endpoint), stdin=True)
        self._ask("SET statement_timeout = '5s'")
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rehearse-locks")
        self._thread.start()
        return self

    def _ask(self, sql: str) -> list[list[str]]:
        self._proc.write(f"{sql};\n\\echo {self.MARK}\n".encode())
        rows: list[list[str]] = []
        while True:
            while b"\n" not in self._buf:
                chunk = self._proc.read(65536)
                if not chunk:
                    raise HeadwayError("the lock-polling session ended", "see the database's log")
                self._buf += chunk
            line, _, self._buf = self._buf.partition(b"\n")
            text = line.decode(errors="replace")
            if text == self.MARK:
                return rows
            if text:
                rows.append(text.split("\t"))

    def _loop(self) -> None:
        limit = int(self.scratch.svc.t.deploy.release_timeout / POLL_S) + 1000  # bounded, whatever happens
        for _ in range(limit):
            try:
                rows = self._ask(_LOCKS)
            except (HeadwayError, OSError) as exc:
                self.error = str(exc)
                return
            self.tracker.observe(time.monotonic(), [LockSample(int(r[0]), r[1], r[2], r[3] if len(r) > 3 else "")
                                                    for r in rows if len(r) >= 3])
            if self._stop.wait(POLL_S):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.result.locks = self.tracker.observations()
        self.result.lock_polls = self.tracker.polls
        if self.error:
            self.result.notes.append(f"lock polling stopped early: {self.error}")

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._proc is not None:
            self._proc.kill()

