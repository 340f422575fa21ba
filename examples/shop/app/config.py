"""Settings read from the environment (12-factor style)."""

from __future__ import annotations

import os
from dataclasses import dataclass

APP_NAME = "shop"


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    release: str
    environment: str
    fail_rate: float          # share of `GET /` requests answered with 500
    broken_health: bool       # /health/ready always answers 503
    db_pool_size: int
    work_seconds: float       # simulated work per order in the worker

    @classmethod
    def from_env(cls) -> Settings:
        fail_rate = _float("FAIL_RATE", 0.0)
        if not 0.0 <= fail_rate <= 1.0:
            raise SystemExit(f"FAIL_RATE must be between 0 and 1, got {fail_rate}")
        return cls(
            database_url=os.environ.get("DATABASE_URL", "postgresql://shop:shop@localhost:5432/shop"),
            redis_url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
            release=os.environ.get("HEADWAY_RELEASE", "unknown"),
            environment=os.environ.get("HEADWAY_ENVIRONMENT", "development"),
            fail_rate=fail_rate,
            broken_health=os.environ.get("BROKEN_HEALTH", "").strip() == "1",
            db_pool_size=max(1, int(_float("DB_POOL_SIZE", 5))),
            work_seconds=max(0.0, _float("WORK_SECONDS", 0.05)),
        )


QUEUE = "orders"
