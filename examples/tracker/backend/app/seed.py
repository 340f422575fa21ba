"""Insert a few demo incidents into an empty database: python -m app.seed

Meant for staging and review environments; does nothing when incidents exist.
"""

from __future__ import annotations

import sys

import psycopg

from app.config import Settings

DEMO_INCIDENTS = [
    ("Checkout returns 502 for some users", "Started after the 14:02 deploy; about 3% of requests.", "sev2",
     "investigating"),
    ("Password reset e-mails delayed", "Queue depth above 10k on the mailer.", "sev3", "open"),
    ("Dashboard slow to load", "p95 above 4 s since the index change.", "sev4", "resolved"),
]


def main() -> int:
    settings = Settings.from_env()
    try:
        with psycopg.connect(settings.database_url, connect_timeout=5) as conn:
            row = conn.execute("SELECT count(*) FROM incidents").fetchone()
            if row and row[0]:
                print(f"seed: {row[0]} incidents exist, nothing to do")
                return 0
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO incidents (title, description, severity, status, resolved_at)"
                    " VALUES (%s, %s, %s, %s, CASE WHEN %s = 'resolved' THEN now() END)",
                    [(*incident, incident[3]) for incident in DEMO_INCIDENTS],
                )
    except psycopg.errors.UndefinedTable:
        print("seed failed: table `incidents` is missing; run `python -m app.migrate` first", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"seed failed: {type(exc).__name__}: {str(exc).strip()}", file=sys.stderr)
        return 1
    print(f"seed: inserted {len(DEMO_INCIDENTS)} demo incidents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
