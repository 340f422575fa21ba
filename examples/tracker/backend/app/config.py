"""Settings read from the environment (12-factor style)."""

from __future__ import annotations

import os
from dataclasses import dataclass

APP_NAME = "tracker"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    database_url: str
    release: str
    environment: str
    db_pool_size: int

    @classmethod
    def from_env(cls) -> Settings:
        # headway's `databases:` entry gives every container DATABASE_URL; HEADWAY_* name the running release
        return cls(
            database_url=os.environ.get("DATABASE_URL", "postgresql://tracker:tracker@localhost:5432/tracker"),
            release=os.environ.get("HEADWAY_RELEASE", "unknown"),
            environment=os.environ.get("HEADWAY_ENVIRONMENT", "development"),
            db_pool_size=max(1, _int("DB_POOL_SIZE", 10)),
        )
