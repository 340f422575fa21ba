"""Secrets files: dotenv `KEY=value` files that live only on the machine that deploys, never in git or output."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from headway.errors import ConfigError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def default_secrets_path(root: Path, environment: str) -> Path:
    return root / ".headway" / f"secrets.{environment}"


def load_secrets(path: Path, *, required: bool) -> dict[str, str]:
    """Parse a secrets file; refuse one that others can read. Values are never echoed in errors."""
    if not path.exists():
        if required:
            raise ConfigError(f"secrets file {path} is missing",
                              f"create it with KEY=value lines and `chmod 600 {path}`")
        return {}
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise ConfigError(f"secrets file {path} is readable by others (mode {mode:o})",
                          f"run `chmod 600 {path}`")
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise ConfigError(f"{path}:{number}: expected KEY=value", "fix or remove that line")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values
