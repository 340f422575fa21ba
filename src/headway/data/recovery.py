"""Point-in-time restore of an environment's database, as `headway db restore --to TIME` runs it: the target is
checked against the recoverable window first, then, holding the app's deploy lock and the database's lock, the app
is stopped, the database restored to that time (see headway.data.pitr), and the app started again; a full base
backup on the new timeline follows while the app already serves."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from headway.data.pitr import STANZA, PitrInfo, plan_restore
from headway.errors import Aborted, ExitCode, HeadwayError

if TYPE_CHECKING:
    from headway.service import Headway


@dataclass
class PointInTimeResult:
    database: str
    target: datetime
    recovered_to: datetime | None  # the last transaction replayed
    method: str
    app_stopped: bool
    app_down_s: float  # from stopping the app until it served again
    database_down_s: float
    seconds: float
    data_volume: str
    previous_volume: str
    base_backup: str | None  # the full backup taken afterwards
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["target"] = self.target.isoformat()
        out["recovered_to"] = self.recovered_to.isoformat() if self.recovered_to else None
        return out


def parse_time(text: str) -> datetime:
    """`2026-11-21 14:05`, `2026-11-21T14:05:00+01:00`, `…Z` or `… UTC`; a time without a zone is UTC."""
    raw = text.strip()
    if raw.upper().endswith(" UTC"):
        raw = raw[:-4]
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise HeadwayError(f"{text!r} is not a time", 'write it as "2026-11-21 14:05" (UTC) or with a zone, '
                           'e.g. "2026-11-21 14:05:00+01:00"', exit_code=ExitCode.USAGE) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def show(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if when else "-"


def window(hw: Headway, name: str | None = None) -> PitrInfo:
    svc = hw.databases()
    return svc.dbs.pitr(svc.dbs.spec(name)).info()


def base_backup(hw: Headway, name: str | None = None, kind: str = "full") -> Any:
    svc = hw.databases()
    spec = svc.dbs.spec(name)
    pitr = svc.dbs.pitr(spec)
    with svc.lock(spec, f"{kind} base backup of {spec.name}", wait=60):
        return pitr.base_backup(kind)  # type: ignore[arg-type]  # checked by base_backup


def restore_to_time(hw: Headway, when: datetime, name: str | None = None, *,
                    confirmed: bool = False) -> PointInTimeResult:
    svc = hw.databases()
    spec = svc.dbs.spec(name)
    pitr = svc.dbs.pitr(spec)
    env = hw.target.environment
    started = time.monotonic()
    # refuse a target outside the window before anything stops (a running server archives up to now first)
    live = hw.engine.get(pitr.container_name)
    running = live is not None and bool(hw.engine.state(live).get("Running")) and live.labels.get(STANZA) == \
        pitr.stanza
    plan_restore(pitr.info(), when, complete_until=datetime.now(UTC) if running else None)
    if not confirmed:
        raise Aborted(f"restoring {spec.name} in {env} to {show(when)} replaces its data",
                      "confirm at the prompt, or pass --yes")
    with hw.state.lock(f"db restore {spec.name} --to {show(when)}"), \
            svc.lock(spec, f"point-in-time restore of {spec.name}"):
        current = hw.state.current()
        stopped = current.live is not None and not current.stopped
        down_at = time.monotonic()
        if stopped:
            with svc.report.step(f"stop the app of {env}"):
                hw.deployer.stop(lock=False)
        try:
            result = pitr.restore_to(when, backup_after=False)
        except BaseException:
            if stopped:
                hw.deployer.start(lock=False)  # on the data it had: the restore never wrote to it
            raise
        if stopped:
            try:
                hw.deployer.start(lock=False)
            except HeadwayError as exc:
                raise HeadwayError(f"{spec.name} was restored to {show(result.recovered_to)}, but the app did not "
                                   f"start again: {exc.message}", f"fix the cause, then `headway start -e {env}`",
                                   details=exc.details, exit_code=exc.exit_code) from None
        app_down = time.monotonic() - down_at
        warnings = list(result.warnings)
        label = None
        try:
            label = pitr.base_backup("full").label
        except HeadwayError as exc:
            warnings.append(f"the restore succeeded but the full base backup after it failed: {exc.message}; run "
                            f"`headway db base-backup -e {env}`")
    return PointInTimeResult(spec.name, when, result.recovered_to, result.method, stopped,
                             round(app_down if stopped else 0.0, 3), round(result.downtime_seconds, 3),
                             round(time.monotonic() - started, 3), result.data_volume, result.previous_volume, label,
                             warnings)
