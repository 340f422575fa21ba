"""Apply database migrations: python -m app.migrate

Every migrations/*.sql file runs once, in name order, each inside its own
transaction; applied versions are recorded in `schema_migrations`. A
PostgreSQL advisory lock makes concurrent runs wait for each other instead of
colliding. Running it again applies nothing. Exits non-zero on any error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psycopg

from app.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
LOCK_KEY = 7_300_451_120_000_002  # arbitrary, identifies "tracker schema migrations"


def connect(url: str, wait: float) -> psycopg.Connection:
    """Connect, retrying for up to `wait` seconds while the database starts."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            if time.monotonic() >= deadline:
                raise
            print(f"database not reachable yet ({str(exc).strip().splitlines()[0]}); retrying", flush=True)
            time.sleep(1)


def acquire_lock(conn: psycopg.Connection, wait: float) -> None:
    deadline = time.monotonic() + wait
    announced = False
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if row and row[0]:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"another migration run still holds the lock after {wait:.0f}s")
        if not announced:
            print("waiting for another migration run to finish", flush=True)
            announced = True
        time.sleep(0.5)


def migrate(conn: psycopg.Connection, directory: Path) -> list[str]:
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no *.sql files in {directory}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    done = []
    for path in files:
        version = path.stem
        if version in applied:
            continue
        with conn.transaction():
            conn.execute(path.read_text())  # no parameters: the file may hold several statements
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        print(f"applied {path.name}", flush=True)
        done.append(version)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.migrate", description="apply migrations/*.sql")
    parser.add_argument("--dir", type=Path, default=MIGRATIONS_DIR, help="migrations directory")
    parser.add_argument("--wait", type=float, default=30.0,
                        help="seconds to wait for the database and for a concurrent run (default 30)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        with connect(settings.database_url, args.wait) as conn:
            acquire_lock(conn, args.wait)
            try:
                done = migrate(conn, args.dir)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    except (psycopg.Error, OSError, TimeoutError) as exc:
        print(f"migration failed: {type(exc).__name__}: {str(exc).strip()}", file=sys.stderr)
        return 1
    if done:
        print(f"migrations: applied {len(done)}", flush=True)
    else:
        print("migrations: nothing to apply, schema is up to date", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
