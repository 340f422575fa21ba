"""Writing files on the host so that a crash leaves the old version or the new one, never half of either.
Standard library only: the quick rollback path (release/quick.py) uses it before anything else is imported."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any


def atomic_write(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write beside, fsync, rename over: readers see the old file or the new one (created with `mode`)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when it is absent, unreadable, being replaced, or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
