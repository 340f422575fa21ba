"""The backup catalog on the host: every backup's size, duration, checksum, locations, status and verification.

`apps/APP/ENV/backups.jsonl` is append-only; a later line about the same backup id supersedes earlier ones, so a
crash mid-backup leaves a `running` line that is shown as interrupted, never as good.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from headway.errors import NotFound
from headway.state.store import now_iso

Status = Literal["running", "good", "failed", "deleted"]


class BackupRecord(BaseModel):
    id: str
    app: str
    environment: str
    database: str  # the name in headway.yml
    engine: str
    image: str
    format: str  # what the dump is, e.g. "pg_dump custom format"
    key: str  # object key inside each storage
    reason: str = "manual"
    deploy: int | None = None  # for a backup taken before a deploy: that deploy's number
    status: Status = "running"
    started_at: str = Field(default_factory=now_iso)
    finished_at: str | None = None
    duration_s: float = 0.0
    size: int = 0  # bytes stored
    raw_size: int = 0  # bytes the dump tool produced
    sha256: str = ""
    encrypted_to: list[str] = Field(default_factory=list)
    locations: dict[str, str] = Field(default_factory=dict)  # storage name -> path or s3:// URL
    counts: dict[str, int] = Field(default_factory=dict)  # table (or redis db) -> rows, just before the dump
    counts_after: dict[str, int] = Field(default_factory=dict)  # and just after it
    error: str | None = None
    verified_at: str | None = None
    verify_status: Literal["passed", "failed", "checksum-only"] | None = None
    verify_detail: str | None = None

    @property
    def encrypted(self) -> bool:
        return bool(self.encrypted_to)

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at).astimezone(UTC)


class Catalog:
    def __init__(self, state_root: Path, app: str, environment: str) -> None:
        self.path = state_root / "apps" / app / environment / "backups.jsonl"
        self.app, self.environment = app, environment

    def record(self, rec: BackupRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = (rec.model_dump_json() + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def all(self, database: str | None = None) -> list[BackupRecord]:
        """Every backup, oldest first (deleted ones included)."""
        if not self.path.exists():
            return []
        latest: dict[str, BackupRecord] = {}
        for line in self.path.read_text().splitlines():
            if line.strip():
                rec = BackupRecord.model_validate_json(line)
                latest[rec.id] = rec
        out = sorted(latest.values(), key=lambda r: r.started_at)
        return [r for r in out if database is None or r.database == database]

    def good(self, database: str) -> list[BackupRecord]:
        """Backups that can be restored, newest first."""
        return sorted((r for r in self.all(database) if r.status == "good"), key=lambda r: r.started_at,
                      reverse=True)

    def get(self, backup_id: str) -> BackupRecord:
        for rec in self.all():
            if rec.id == backup_id:
                return rec
        raise NotFound(f"no backup {backup_id!r} of {self.app}/{self.environment}",
                       f"see `headway db backups -e {self.environment}` for the ones that exist")


SAFETY_PREFIX = "before "  # reasons of the backups headway takes by itself: before a restore, a deploy, an upgrade


def is_safety(rec: BackupRecord) -> bool:
    """A backup headway took by itself just before changing data (a restore, a deploy's release command, a new
    image): the data as it was, not a restore point anyone chose; never picked without being named."""
    return rec.reason.startswith(SAFETY_PREFIX)


class RestoreEntry(BaseModel):
    database: str
    backup: str  # the backup id restored
    backup_started_at: str
    at: str = Field(default_factory=now_iso)  # when the restored data went live
    kept_as: str = ""


class RestoreLog:
    """Every restore that went live in one environment (`apps/APP/ENV/restores.jsonl`, append-only): what tells a
    later restore or clone that a backup predates data that replaced it."""

    def __init__(self, state_root: Path, app: str, environment: str) -> None:
        self.path = state_root / "apps" / app / environment / "restores.jsonl"

    def record(self, entry: RestoreEntry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (entry.model_dump_json() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def since(self, database: str, started_at: str) -> list[RestoreEntry]:
        """Restores of `database` that went live after `started_at`, oldest first."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                entry = RestoreEntry.model_validate_json(line)
            except ValueError:
                continue  # a torn last line
            if entry.database == database and entry.at > started_at:
                out.append(entry)
        return out


def age(started_at: str, now: datetime | None = None) -> str:
    """How long ago, for people: "3 h 12 min ago", "2 days ago"."""
    seconds = max(0, int(((now or datetime.now(UTC)) - datetime.fromisoformat(started_at).astimezone(UTC))
                         .total_seconds()))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"
    days = seconds // 86400
    return f"{days} day{'s' if days != 1 else ''} ago"
