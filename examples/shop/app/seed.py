"""Insert a few demo orders into an empty database: python -m app.seed

Meant for staging and review environments; does nothing when orders exist.
"""

from __future__ import annotations

import sys

import psycopg

from app.config import Settings

DEMO_ORDERS = [
    ("coffee beans", 2),
    ("mug", 1),
    ("espresso machine", 1),
    ("paper filters", 5),
]


def main() -> int:
    settings = Settings.from_env()
    try:
        with psycopg.connect(settings.database_url, connect_timeout=5) as conn:
            row = conn.execute("SELECT count(*) FROM orders").fetchone()
            if row and row[0]:
                print(f"seed: {row[0]} orders exist, nothing to do")
                return 0
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO orders (item, qty, status, processed_at) VALUES (%s, %s, 'done', now())",
                    DEMO_ORDERS,
                )
    except psycopg.errors.UndefinedTable:
        print("seed failed: table `orders` is missing; run `python -m app.migrate` first", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"seed failed: {type(exc).__name__}: {str(exc).strip()}", file=sys.stderr)
        return 1
    print(f"seed: inserted {len(DEMO_ORDERS)} demo orders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
