"""One operation at a time on a database (backup, restore): an flock the kernel releases if the process dies."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from headway.state.store import LockInfo, hold_lock


def database_lock(path: Path, what: str, wait: float = 0.0) -> AbstractContextManager[LockInfo]:
    return hold_lock(path, what, wait, subject=f"{path.stem} is busy", fix="wait for it to finish and run this again")
