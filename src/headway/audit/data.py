"""Data: are there backups, away from the host, encrypted, fresh, verified and restored for real recently?"""

from __future__ import annotations

from collections.abc import Iterator

from headway.audit.checks import AuditContext, Check, Result, check, failed, passed, unknown
from headway.data.catalog import BackupRecord, Catalog, RestoreLog
from headway.data.databases import DatabaseSpec, resolve_databases

CHECKS: list[Check] = []


def _databases(ctx: AuditContext) -> list[DatabaseSpec]:
    if "databases" not in ctx.cache:
        ctx.cache["databases"] = list(resolve_databases(ctx.target).values()) if ctx.target.config.databases \
            else []
    dbs: list[DatabaseSpec] = ctx.cache["databases"]
    return dbs


def _catalog(ctx: AuditContext) -> Catalog:
    return Catalog(ctx.state_root, ctx.target.app, ctx.env)


def _days(d: float) -> str:
    return f"{d:.1f} days" if d < 10 else f"{d:.0f} days"


def _within_age(ctx: AuditContext, evidence: str, age: float, fix: str, subject: str) -> Result:
    """Passed when `age` (days) is within the audit's --max-age, else failed with the limit named."""
    if age > ctx.max_age_days:
        return failed(evidence + f" (limit {_days(ctx.max_age_days)})", fix, subject=subject)
    return passed(evidence, subject=subject)


def schedule_interval_days(schedule: str) -> float:
    """The longest gap between the next few runs of a cron schedule, in days."""
    from datetime import UTC, datetime

    from headway.data.cron import parse_cron

    cron = parse_cron(schedule)
    t = datetime.now(UTC)
    runs = []
    for _ in range(4):
        t = cron.next_after(t)
        runs.append(t)
    return max((b - a).total_seconds() for a, b in zip(runs, runs[1:], strict=False)) / 86400


@check(CHECKS, "data.scheduled", "backups scheduled", "critical")
def scheduled(ctx: AuditContext) -> Iterator[Result]:
    from headway.data.schedule import CRON_DIR, cron_file_name

    for db in _databases(ctx):
        fix = f"set databases.{db.name}.backup.schedule (e.g. \"0 3 * * *\"), then " \
              f"`headway db schedule -e {ctx.env} --install`"
        if not db.backup.schedule:
            yield failed("no backup.schedule: backups happen only by hand or before deploys", fix, subject=db.name)
            continue
        cron = CRON_DIR / cron_file_name(ctx.target.app, ctx.env)
        try:
            text = cron.read_text()
        except FileNotFoundError:
            yield failed(f"schedule \"{db.backup.schedule}\" is in headway.yml but not installed ({cron} is absent)",
                         f"`headway db schedule -e {ctx.env} --install` on the host", subject=db.name)
            continue
        except OSError as exc:
            yield unknown(f"{cron}: {exc.strerror}", subject=db.name)
            continue
        if f" run-scheduled -e {ctx.env} {db.name}" not in text:
            yield failed(f"{cron} does not run {db.name}'s backups", f"`headway db schedule -e {ctx.env} --install`",
                         subject=db.name)
            continue
        yield passed(f"\"{db.backup.schedule}\" by the host's cron ({cron})", subject=db.name)


@check(CHECKS, "data.offsite", "backups stored off the host", "warning")
def offsite(ctx: AuditContext) -> Iterator[Result]:
    for db in _databases(ctx):
        if "s3" in db.backup.storage:
            yield passed(f"storage: {', '.join(db.backup.storage)}", subject=db.name)
        else:
            yield failed(f"storage: {', '.join(db.backup.storage)}: a lost disk or host loses the backups too",
                         f"add storage.s3 and databases.{db.name}.backup.storage: [local, s3]", subject=db.name)


@check(CHECKS, "data.encrypted", "backups encrypted", "warning")
def encrypted(ctx: AuditContext) -> Iterator[Result]:
    for db in _databases(ctx):
        if db.backup.encrypt_to:
            yield passed(f"age, to {len(db.backup.encrypt_to)} recipient(s)", subject=db.name)
        else:
            yield failed("backups are stored in the clear: whoever reads the bucket or disk reads the data",
                         f"`age-keygen`, then databases.{db.name}.backup.encrypt_to: [age1…] (keep the private key "
                         "off the server)", subject=db.name)


def _newest_good(ctx: AuditContext, db: DatabaseSpec) -> BackupRecord | None:
    good = _catalog(ctx).good(db.name)
    return good[0] if good else None


@check(CHECKS, "data.fresh", "a recent good backup", "critical")
def fresh(ctx: AuditContext) -> Iterator[Result]:
    for db in _databases(ctx):
        limit = ctx.max_age_days
        if db.backup.schedule:
            limit = min(limit, 2 * schedule_interval_days(db.backup.schedule))
        newest = _newest_good(ctx, db)
        fix = f"`headway db backup -e {ctx.env} {db.name}`" + ("" if db.backup.schedule else
                                                               ", and schedule them")
        if newest is None:
            yield failed("no good backup in the catalog", fix, subject=db.name)
            continue
        age = ctx.age_days(newest.finished_at or newest.started_at) or 0.0
        evidence = f"newest good backup {newest.id}: {_days(age)} old (limit {_days(limit)})"
        if age > limit:
            yield failed(evidence + (": the scheduled backups are not running" if db.backup.schedule else ""),
                         fix + (f"; see /var/log/headway/{ctx.target.app}-{ctx.env}-{db.name}.log"
                                if db.backup.schedule else ""), subject=db.name)
        else:
            yield passed(evidence, subject=db.name)


@check(CHECKS, "data.verified", "backups verified recently", "warning")
def verified(ctx: AuditContext) -> Iterator[Result]:
    for db in _databases(ctx):
        checked = [r for r in _catalog(ctx).all(db.name) if r.verified_at and r.verify_status in
                   ("passed", "checksum-only")]
        fix = f"`headway db verify -e {ctx.env} {db.name}`"
        if not checked:
            yield failed("no backup was ever verified", fix, subject=db.name)
            continue
        last = max(checked, key=lambda r: r.verified_at or "")
        age = ctx.age_days(last.verified_at or "") or 0.0
        yield _within_age(ctx, f"{last.id} verified ({last.verify_status}) {_days(age)} ago", age, fix, db.name)


@check(CHECKS, "data.restore-drill", "a restore drill recently", "warning")
def restore_drill(ctx: AuditContext) -> Iterator[Result]:
    """A drill is a restore that really ran: `headway db verify` restoring a backup into a throwaway database and
    comparing its rows (verify status `passed`), or a `headway db restore` that went live."""
    for db in _databases(ctx):
        whens: list[tuple[str, str]] = [(r.verified_at or "", f"verify of {r.id}") for r in _catalog(ctx).all(db.name)
                                        if r.verify_status == "passed" and r.verified_at]
        whens += [(e.at, f"restore of {e.backup}") for e in RestoreLog(ctx.state_root, ctx.target.app, ctx.env)
                  .since(db.name, "")]
        fix = f"`headway db verify -e {ctx.env} {db.name}` (with --identity for encrypted backups)"
        if not whens:
            yield failed("no restore was ever tried (a checksum-only verification does not restore)", fix,
                         subject=db.name)
            continue
        at, what = max(whens)
        age = ctx.age_days(at) or 0.0
        yield _within_age(ctx, f"last: {what}, {_days(age)} ago", age, fix, db.name)


@check(CHECKS, "data.pitr", "point-in-time recovery", "info")
def pitr(ctx: AuditContext) -> Iterator[Result]:
    """headway.yml has no RPO setting: with `pitr` at most `archive_timeout` of commits can be lost, without it
    everything since the last backup."""
    for db in _databases(ctx):
        if db.engine != "postgres" or not db.managed:
            continue
        if db.pitr_enabled and db.pitr is not None:
            yield passed(f"WAL archived continuously: at most {db.pitr.archive_timeout:g}s of commits can be lost",
                         subject=db.name)
            continue
        every = f"every {_days(schedule_interval_days(db.backup.schedule))}" if db.backup.schedule else \
            "no schedule"
        yield failed(f"no pitr: a crash loses everything since the last backup ({every}); headway.yml sets no RPO",
                     f"databases.{db.name}.pitr: {{enabled: true}} when minutes of data matter", subject=db.name)


@check(CHECKS, "data.before-deploy", "a backup before each deploy", "warning")
def before_deploy(ctx: AuditContext) -> Iterator[Result]:
    for db in _databases(ctx):
        if db.backup.before_deploy == "always":
            yield passed("before_deploy: always (a failed migration can be undone)", subject=db.name)
        else:
            yield failed("before_deploy: never: a bad migration has no restore point of its own",
                         f"databases.{db.name}.backup.before_deploy: always", subject=db.name)
