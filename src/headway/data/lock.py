"""One operation at a time on a database (backup, restore): an flock the kernel releases if the process dies."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from headway.errors import LockHeld
from headway.state.store import now_iso, operator


@contextmanager
def database_lock(path: Path, what: str, wait: float = 0.0) -> Iterator[None]:
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
                    try:
                        holder = json.loads(path.read_text() or "{}")
                    except (OSError, ValueError):
                        holder = {}
                    who = f"{holder.get('by', 'another process')} (`{holder.get('what', '?')}` since " \
                          f"{holder.get('since', '?')})"
                    raise LockHeld(f"{path.stem} is busy: {who}", "wait for it to finish and run this again") from None
                time.sleep(0.2)  # another process holds it; the kernel has no event to wait on
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"by": operator(), "pid": os.getpid(), "what": what, "since": now_iso()}).encode(), 0)
        yield
    finally:
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)
