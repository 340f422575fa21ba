"""Anonymized copies of one environment's database in another: `headway db clone production staging`.

The source is only ever read through its backup storage: the newest good backup of the source environment's
database, never the database itself. The copy is restored beside the target's live database (as `headway db
restore` does), the anonymization rules run inside that copy, and only then is the copy swapped in, with the
target's requests held for the swap alone (no container stops). So the target's app never sees unanonymized data,
and any failure before the swap (rules that do not fit, a damaged backup, a failing rule) drops the copy and leaves
the target's data and app exactly as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from headway.config.resolve import Target
from headway.data.anonymize import (
    AnonymizeReport,
    AnonymizeRules,
    DatabaseTarget,
    Engine,
    anonymize,
    refuse_production_target,
)
from headway.data.backup import BackupService
from headway.data.catalog import BackupRecord
from headway.data.databases import DatabaseSpec
from headway.data.restore import AppControl, restore_live
from headway.engine.docker import DockerEngine
from headway.errors import ExitCode, HeadwayError
from headway.release.report import Reporter

if TYPE_CHECKING:
    from headway.service import Headway


@dataclass(frozen=True)
class ClonePlan:
    source: str  # environment
    target: str  # environment
    backup: BackupRecord  # the source's newest good backup (safety backups left out)
    database: str  # the database's name in headway.yml
    notes: list[str] = field(default_factory=list)  # which backup, how old; a warning per restore since it


@dataclass
class CloneResult:
    source: str
    target: str
    backup_id: str
    database: str
    safety_backup: str | None  # the target's data before the clone
    kept_as: str  # where the target's previous data is kept
    anonymized: AnonymizeReport
    held_s: float  # how long the target's requests were held for the swap
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "backup_id": self.backup_id,
                "database": self.database, "safety_backup": self.safety_backup, "kept_as": self.kept_as,
                "held_s": self.held_s, "seconds": self.seconds,
                "tables": [{"table": t.table, "rows": t.rows,
                            "columns": [{"column": c.column, "rule": c.rule, "values": c.values}
                                        for c in t.columns]}
                           for t in self.anonymized.tables]}


def check_environments(source: str, target: str) -> None:
    """Before anything is read: production is never a target, and a clone goes to another environment."""
    refuse_production_target(target)
    if source.strip().lower() == target.strip().lower():
        raise HeadwayError(f"the source and the target are both {target}", "name two environments: the source "
                           "first, e.g. `headway db clone production staging`", exit_code=ExitCode.USAGE)


class _TargetService(BackupService):
    """The target's backup service, which reads backups of the source environment from the source's storage."""

    def __init__(self, target: Target, engine: DockerEngine, state_root: Path, reporter: Reporter,
                 source: BackupService) -> None:
        super().__init__(target, engine, state_root, reporter)
        self.source = source

    @contextmanager
    def open_stored(self, rec: BackupRecord) -> Iterator[BinaryIO]:
        if (rec.app, rec.environment) == (self.source.t.app, self.source.t.environment):
            with self.source.open_stored(rec) as fh:
                yield fh
        else:
            with super().open_stored(rec) as fh:
                yield fh


def plan_clone(source: Headway, target: Headway, name: str | None = None) -> ClonePlan:
    """What a clone would do, found without touching either database: the source's newest good backup (from its
    catalog) and a managed SQL database of the same name in the target."""
    check_environments(source.target.environment, target.target.environment)
    svc = source.databases()
    rec = svc.get(None, name)
    spec = target.databases().dbs.spec(rec.database)
    _check_spec(spec, target.target.environment)
    return ClonePlan(source.target.environment, target.target.environment, rec, spec.name,
                     [f"{source.target.environment}: {line}" for line in svc.describe_choice(rec)])


def _check_spec(spec: DatabaseSpec, environment: str) -> None:
    if spec.engine == "redis":
        raise HeadwayError(f"database {spec.name} is Redis: anonymization rules apply to SQL tables",
                           "clone a PostgreSQL, MariaDB or MySQL database", exit_code=ExitCode.USAGE)
    if not spec.managed:
        raise HeadwayError(f"database {spec.name} in {environment} is external: a clone goes into a database "
                           "headway runs", "clone into an environment whose database is managed",
                           exit_code=ExitCode.USAGE)


def clone_database(source: Headway, target: Headway, plan: ClonePlan, rules: AnonymizeRules, *,
                   identities: list[Any] | None = None, app: AppControl | None = None, salt: str = "",
                   confirmed: bool = False) -> CloneResult:
    """Restore the source's backup beside the target's database, anonymize that copy, then swap it in."""
    check_environments(plan.source, plan.target)
    root = target.state.root
    svc = _TargetService(target.target, target.engine, root, target.deployer.report, source.databases())
    spec = svc.dbs.spec(plan.database)
    _check_spec(spec, plan.target)
    done: list[AnonymizeReport] = []

    def anonymize_copy(container_id: str, database: str) -> None:
        ep = svc.dbs.endpoint(spec)
        with svc.report.step(f"anonymize {database} ({rules.source})") as step:
            db = DatabaseTarget(container=container_id, engine=cast(Engine, spec.engine), user=ep.user,
                                database=database, password=ep.password)
            report = anonymize(target.engine, db, rules, environment=plan.target, salt=salt)
            step.detail = ", ".join(f"{t.table}: {t.rows} rows" for t in report.tables) or "no rule changes a value"
        done.append(report)

    try:
        result = restore_live(svc, plan.backup, spec, identities, app, confirmed, before_swap=anonymize_copy)
    except HeadwayError as exc:
        raise HeadwayError(f"clone of {plan.backup.id} into {plan.target} failed: {exc.message}",
                           f"{exc.fix + '; ' if exc.fix else ''}{plan.target} is as it was (its data and its app)",
                           details=exc.details, exit_code=exc.exit_code) from None
    assert done, "restore_live swaps only after the copy was anonymized"
    return CloneResult(plan.source, plan.target, plan.backup.id, spec.name, result.safety_backup, result.kept_as,
                       done[0], result.held_s, result.seconds)
