"""Verification: restore a backup into a throwaway container of the same image and check what came back.

Checks, in order: the stored bytes against the recorded checksum (and decryption), the restore tool's exit
status, the tables and their row counts against those recorded at backup time, and the optional SQL `check`.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headway.engine import exec_stream
from headway.data.catalog import BackupRecord
from headway.data.engines import DIALECTS, Dialect, Endpoint, Redis
from headway.data.pipeline import IntegrityError
from headway.engine import labels as L
from headway.errors import HeadwayError
from headway.state.store import now_iso

if TYPE_CHECKING:
    from headway.data.backup import BackupService

SCRATCH = "headway_verify"


@dataclass
class VerifyResult:
    backup_id: str
    status: str  # passed | failed | checksum-only
    detail: str
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def compare_counts(before: dict[str, int], after: dict[str, int], restored: dict[str, int]) -> list[str]:
    """Problems with restored counts: each table's must lie between the counts taken just before and just after
    the dump (equal to both when nothing wrote meanwhile)."""
    problems = []
    for table in sorted(set(before) | set(after) | set(restored)):
        b, a, r = before.get(table), after.get(table), restored.get(table)
        if r is None:
            if b is not None and a is not None:
                problems.append(f"{table}: missing from the restore")
            continue
        present = [x for x in (b, a) if x is not None]
        if not present:
            problems.append(f"{table}: not in the database when it was backed up")
            continue
        low = min(present) if len(present) == 2 else 0  # created or dropped during the dump: anything up to it
        high = max(present)
        if not low <= r <= high:
            expected = str(low) if low == high else f"{low}–{high}"
            problems.append(f"{table}: {r} rows, expected {expected}")
    return problems


class Scratch:
    """A throwaway database server of a backup's image: no network, no named volume, removed afterwards."""

    def __init__(self, svc: BackupService, rec: BackupRecord) -> None:
        self.svc, self.rec = svc, rec
        self.dialect: Dialect = DIALECTS[rec.engine]
        self.password = secrets.token_urlsafe(18)
        self.container: Any = None

    @property
    def endpoint(self) -> Endpoint:
        user = "root" if self.rec.engine in ("mysql", "mariadb") else "headway"
        return Endpoint(host="", port=self.dialect.port, user=user, password=self.password, database=SCRATCH)

    def __enter__(self) -> Scratch:
        engine = self.svc.engine
        engine.require_image(self.rec.image, f"verification of {self.rec.id}")
        is_redis = isinstance(self.dialect, Redis)
        self.container = engine.create(
            name=f"{self.rec.app}-{self.rec.environment}-{self.rec.database}-verify-{uuid.uuid4().hex[:6]}",
            image=self.rec.image, command=["sleep", "infinity"] if is_redis else None,
            env={} if is_redis else self.dialect.container_env(SCRATCH, "headway", self.password, self.password),
            labels=L.owned("oneoff", app=self.rec.app, environment=self.rec.environment, role=self.rec.database),
            network=None, restart=False)
        engine.start(self.container)
        if not is_redis:
            self._wait(self.dialect.health_command(SCRATCH, "headway"), 120, "the throwaway database to start")
        return self

    def _wait(self, argv: list[str], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code, out, _ = exec_stream.run(self.svc.engine.client, self.container.id, argv, timeout=30)
            if code == 0 and "LOADING" not in out:
                return
            if time.monotonic() > deadline or not self.svc.engine.state(self.container).get("Running"):
                raise HeadwayError(f"{what} did not happen", "see the container's log",
                                   details=self.svc.engine.last_lines(self.container, 20))
            time.sleep(0.2)  # polling readiness with a deadline

    def restore(self, identities: list[Any] | None) -> dict[str, int]:
        """Restore the backup here and return what came back (rows per table, keys per Redis db)."""
        ep = self.endpoint
        if isinstance(self.dialect, Redis):
            self.svc.restore_into(self.rec, self.container.id, ep, "/data/dump.rdb", identities)
            code, _, err = exec_stream.run(self.svc.engine.client, self.container.id,
                                           ["redis-check-rdb", "/data/dump.rdb"])
            if code != 0:
                raise HeadwayError("redis-check-rdb rejects the snapshot", "use another backup", details=err)
            exec_stream.run(self.svc.engine.client, self.container.id,
                            ["redis-server", "--dir", "/data", "--dbfilename", "dump.rdb", "--save", "",
                             "--daemonize", "yes", "--port", str(self.dialect.port)])
            self._wait(self.dialect.cli_argv(Endpoint("127.0.0.1", self.dialect.port, "", "", "0"), "PING"), 120,
                       "the snapshot to load")
            return self.svc.stats(self.dialect, self.container.id, Endpoint("", self.dialect.port, "", "", "0"), "0")
        if self.rec.engine in ("mysql", "mariadb"):
            self.svc.dbs.run_sql(self.dialect, self.container.id, f"CREATE DATABASE IF NOT EXISTS {SCRATCH}",
                                 "mysql", ep)
        self.svc.restore_into(self.rec, self.container.id, ep, SCRATCH, identities)
        return self.svc.stats(self.dialect, self.container.id, ep, SCRATCH)

    def query(self, sql: str) -> list[list[str]]:
        return self.svc.dbs.run_sql(self.dialect, self.container.id, sql, SCRATCH, self.endpoint)

    def __exit__(self, *exc: object) -> None:
        if self.container is not None:
            self.svc.engine.remove(self.container, volumes=True)


def verify_backup(svc: BackupService, rec: BackupRecord, identities: list[Any] | None) -> VerifyResult:
    started = time.monotonic()
    spec = svc.dbs.specs.get(rec.database)
    check_sql = spec.backup.check if spec is not None else None
    with svc.report.step(f"verify {rec.id}") as step:
        result = _verify(svc, rec, identities, check_sql)
        result.seconds = round(time.monotonic() - started, 3)
        step.detail = f"{result.status}: {result.detail}"
    svc.catalog.record(rec.model_copy(update={"verified_at": now_iso(), "verify_status": result.status,
                                              "verify_detail": result.detail[:500]}))
    return result


def _verify(svc: BackupService, rec: BackupRecord, identities: list[Any] | None,
            check_sql: str | None) -> VerifyResult:
    try:
        if rec.encrypted and not identities:
            _checksum_only(svc, rec)
            return VerifyResult(rec.id, "checksum-only", "checksum ok; the content is encrypted and no identity "
                                "was given, so it was not restored (pass --identity)")
        svc.check(rec, identities)
    except IntegrityError as exc:
        return VerifyResult(rec.id, "failed", exc.message)
    try:
        with Scratch(svc, rec) as scratch:
            counts = scratch.restore(identities)
            problems = compare_counts(rec.counts, rec.counts_after, counts)
            if problems:
                return VerifyResult(rec.id, "failed", "; ".join(problems[:10]), counts=counts)
            if check_sql and rec.engine != "redis":
                rows = scratch.query(check_sql)
                value = rows[0][0].strip().lower() if rows and rows[0] else ""
                if value in ("", "0", "f", "false", "null", "no"):
                    return VerifyResult(rec.id, "failed", f"check `{check_sql}` returned {value or 'nothing'}",
                                        counts=counts)
    except HeadwayError as exc:
        return VerifyResult(rec.id, "failed", exc.message + (f": {exc.details.strip()[-300:]}" if exc.details else ""))
    total = sum(counts.values())
    what = ("database(s)", "keys") if rec.engine == "redis" else ("table(s)", "rows")
    return VerifyResult(rec.id, "passed", f"restored {len(counts)} {what[0]}, {total} {what[1]}, counts match"
                        + (", check passed" if check_sql and rec.engine != "redis" else ""), counts=counts)


def _checksum_only(svc: BackupService, rec: BackupRecord) -> None:
    import hashlib

    digest = hashlib.sha256()
    size = 0
    with svc.open_stored(rec) as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    if size != rec.size or digest.hexdigest() != rec.sha256:
        raise IntegrityError(f"the backup's checksum does not match the catalog ({size} of {rec.size} bytes)",
                             "it is corrupted or truncated; use another backup")
