"""State kept on the host: release history, what is live, and locks. Two operators on the host see one truth."""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from headway.errors import LockHeld, NotFound
from headway.state.files import atomic_write as _atomic_write

DEFAULT_ROOT = Path("/var/lib/headway")


def state_root() -> Path:
    return Path(os.environ.get("HEADWAY_STATE_DIR", str(DEFAULT_ROOT)))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


_ACTING_AS: ContextVar[str | None] = ContextVar("headway_acting_as", default=None)


def operator() -> str:
    user = _ACTING_AS.get() or os.environ.get("HEADWAY_USER") or getpass.getuser()
    return f"{user}@{socket.gethostname()}"


@contextmanager
def acting_as(user: str) -> Iterator[None]:
    """Within the block (in this thread), what is done is recorded as done by `user` (e.g. "autoscaler")."""
    token = _ACTING_AS.set(user)
    try:
        yield
    finally:
        _ACTING_AS.reset(token)


# a deploy is live, superseded, rolled-back, failed or interrupted; the other actions are done
Outcome = Literal["live", "failed", "superseded", "rolled-back", "interrupted", "done"]
Action = Literal["deploy", "rollback", "scale", "stop", "start"]


class ReleaseRecord(BaseModel):
    number: int
    action: Action = "deploy"
    version: str
    image: str  # what the release and seed commands ran from
    images: dict[str, str] = Field(default_factory=dict)  # role -> the image its containers run (by digest if pulled)
    config_hash: str = ""
    color: str = ""
    by: str = Field(default_factory=operator)
    started_at: str = Field(default_factory=now_iso)
    duration_s: float = 0.0
    outcome: Outcome = "live"
    replicas: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    replaced: int | None = None  # for a deploy: the deploy number that was live before it
    rollback_of: int | None = None  # for a rollback: the deploy number traffic left
    target: int | None = None  # for a rollback: the deploy number whose containers now serve
    reason: str | None = None  # why it was done, when a machine did it (the autoscaler's signal)

    def image_of(self, role: str) -> str:
        return self.images.get(role, self.image)


class Current(BaseModel):
    live: int | None = None  # the deploy number whose containers serve now
    standby: int | None = None  # kept running for instant rollback
    stopped: bool = False
    replicas: dict[str, int] = Field(default_factory=dict)
    maintenance: bool = False


class LockInfo(BaseModel):
    by: str
    pid: int
    since: str
    command: str


class AppState:
    """History and current pointer of one app in one environment."""

    def __init__(self, root: Path, app: str, environment: str) -> None:
        self.root = root  # the host's state directory (one place: apps/, proxy/, backups/ are under it)
        self.dir = root / "apps" / app / environment
        self.app, self.environment = app, environment

    def _ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- history --------------------------------------------------------------------------------------
    @property
    def history_path(self) -> Path:
        return self.dir / "releases.jsonl"

    def history(self) -> list[ReleaseRecord]:
        if not self.history_path.exists():
            return []
        latest: dict[int, ReleaseRecord] = {}
        for line in self.history_path.read_text().splitlines():
            if line.strip():
                rec = ReleaseRecord.model_validate_json(line)
                latest[rec.number] = rec  # later lines update earlier ones (outcome changes)
        return sorted(latest.values(), key=lambda r: r.number)

    def record(self, rec: ReleaseRecord) -> None:
        self._ensure()
        with open(self.history_path, "a") as fh:
            fh.write(rec.model_dump_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def next_number(self) -> int:
        """The number the next allocation would give (for display; allocate with `allocate_number`)."""
        hist = self.history()
        return max(self._stored_next(), (hist[-1].number + 1) if hist else 1)

    def _stored_next(self) -> int:
        try:
            return int((self.dir / "next-number").read_text().strip() or 1)
        except (OSError, ValueError):
            return 1

    def allocate_number(self, seen: set[int] | None = None) -> int:
        """A new deploy/history number, written down before it is used, so it is never given out twice (even
        when the process dies right after). `seen`: numbers found on the engine's objects, also never reused."""
        self._ensure()
        number = max(self.next_number(), max(seen or {0}) + 1)
        _atomic_write(self.dir / "next-number", str(number + 1))
        return number

    def find(self, ref: str | int) -> ReleaseRecord:
        """A release by deploy number or version."""
        hist = self.history()
        for rec in reversed(hist):
            if (str(rec.number) == str(ref) or rec.version == str(ref)) and rec.action == "deploy":
                return rec
        raise NotFound(f"no release {ref!r} in the history of {self.app}/{self.environment}",
                       f"see `headway releases -e {self.environment}` for the ones that exist")

    def deploys(self) -> list[ReleaseRecord]:
        return [r for r in self.history() if r.action == "deploy"]

    # -- current ----------------------------------------------------------------------------------------
    def current(self) -> Current:
        path = self.dir / "current.json"
        if not path.exists():
            return Current()
        return Current.model_validate_json(path.read_text())

    def set_current(self, cur: Current) -> None:
        self._ensure()
        _atomic_write(self.dir / "current.json", cur.model_dump_json(indent=2))

    def forget(self) -> None:
        for name in ("current.json", "releases.jsonl", "journal.jsonl"):
            (self.dir / name).unlink(missing_ok=True)

    # -- lock -------------------------------------------------------------------------------------------
    def lock(self, command: str, wait: float = 0.0) -> AbstractContextManager[LockInfo]:
        """Hold the deploy lock of this app+environment. The OS releases it if the process dies."""
        self._ensure()
        return hold_lock(self.dir / "deploy.lock", command, wait, subject=f"{self.app}/{self.environment} is locked",
                         fix="wait for it to finish, or pass --wait SECONDS to queue behind it")

    @contextmanager
    def adopt_lock(self, fd: int) -> Iterator[None]:
        """Hold the deploy lock another part of this process took (release/quick.py), release it at the end."""
        try:
            yield
        finally:
            with suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    def lock_holder(self) -> LockInfo | None:
        path = self.dir / "deploy.lock"
        if not path.exists():
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
            except BlockingIOError:
                return _read_lock(path)
        finally:
            os.close(fd)


@contextmanager
def hold_lock(path: Path, command: str, wait: float, *, subject: str, fix: str) -> Iterator[LockInfo]:
    """An flock with who holds it written inside; a holder that dies releases it. Fails with LockHeld after
    `wait` seconds, naming the holder."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_lock(path)
                    who = f"{holder.by} (pid {holder.pid}, `{holder.command}`) since {holder.since}" \
                        if holder else "another process"
                    raise LockHeld(f"{subject} by {who}", fix) from None
                time.sleep(0.2)  # polling a lock held by another process; there is no event to wait on
        info = LockInfo(by=operator(), pid=os.getpid(), since=now_iso(), command=command)
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.model_dump_json().encode(), 0)
        yield info
    finally:
        with suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def _read_lock(path: Path) -> LockInfo | None:
    try:
        text = path.read_text()
        return LockInfo.model_validate_json(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def list_apps(root: Path) -> list[tuple[str, str]]:
    base = root / "apps"
    if not base.is_dir():
        return []
    return sorted((a.name, e.name) for a in base.iterdir() if a.is_dir() for e in a.iterdir() if e.is_dir())


def dump_json(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
