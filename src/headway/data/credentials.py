"""Generated database credentials, kept on the host (0600 files under the state dir), never printed.

Each environment generates its own, so staging and production never share a password.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)
    root_password: str = field(repr=False)


def credentials_path(state_root: Path, app: str, environment: str, name: str) -> Path:
    return state_root / "apps" / app / environment / "databases" / f"{name}.credentials.json"


def load_or_create(path: Path, user: str, existing: Credentials | None = None) -> Credentials:
    """The credentials of one database, generated on first use (or taken from a container that already holds
    data, e.g. one that was an accessory before) and then reused for its whole life."""
    if path.exists():
        data = json.loads(path.read_text())
        return Credentials(user=data["user"], password=data["password"], root_password=data["root_password"])
    creds = existing or Credentials(user=user, password=secrets.token_urlsafe(24),
                                    root_password=secrets.token_urlsafe(24))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"user": creds.user, "password": creds.password, "root_password": creds.root_password}, fh)
    os.replace(tmp, path)
    return creds
