"""Writing files on the host so that a crash leaves the old version or the new one, never half of either.
Standard library only: the quick rollback path (release/quick.py) uses it before anything else is imported."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, text: str) -> None:
    """Write beside, fsync, rename over: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
