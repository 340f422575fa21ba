"""Release versions: the git commit of the app (marked -dirty when the tree has changes), or one given."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from headway.errors import ConfigError

_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def release_version(root: Path, explicit: str | None = None) -> str:
    if explicit is not None:
        if not _VALID.match(explicit):
            raise ConfigError(f"version {explicit!r} is not a valid image tag",
                              "use letters, digits, '.', '_' and '-' (at most 128)")
        return explicit
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return time.strftime("t%Y%m%d-%H%M%S", time.gmtime())  # not a git checkout: a timestamp
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=normal", "--", "."], cwd=root,
                           capture_output=True, text=True).stdout.strip()
    return f"{sha}-dirty" if dirty else sha
