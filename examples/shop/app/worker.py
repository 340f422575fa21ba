"""Queue worker: takes order ids from the Redis list `orders` and marks the orders done.

    python -m app.worker           run until SIGTERM/SIGINT; the current order is
                                   finished first, then the process exits 0
    python -m app.worker --check   exit 0 if PostgreSQL and Redis are reachable
                                   (used as the worker's health check)
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from types import FrameType

import psycopg
import redis

from app.config import QUEUE, Settings

log = logging.getLogger("shop.worker")

POP_TIMEOUT = 1          # seconds BRPOP blocks, so a stop request is noticed within a second
SWEEP_EVERY = 30.0       # seconds between sweeps for orders that never reached the queue
MAX_BACKOFF = 10.0


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=POP_TIMEOUT + 5,
                                          socket_connect_timeout=3)
        self.conn: psycopg.Connection | None = None

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping.is_set():
            log.info("received %s: finishing the current order, then exiting", signal.Signals(signum).name)
        self.stopping.set()

    def db(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.settings.database_url, autocommit=True, connect_timeout=5)
        return self.conn

    def drop_db(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
        self.conn = None

    def process(self, order_id: int) -> None:
        if self.settings.work_seconds:
            time.sleep(self.settings.work_seconds)  # stands in for real work
        with self.db().cursor() as cur:
            cur.execute(
                "UPDATE orders SET status = 'done', processed_at = now() WHERE id = %s AND status = 'pending'",
                (order_id,),
            )
            if cur.rowcount:
                log.info("order %s: done", order_id)
            else:
                log.warning("order %s: not found or already done", order_id)

    def sweep(self) -> None:
        """Process pending orders that were committed but never queued (Redis was down)."""
        with self.db().cursor() as cur:
            cur.execute(
                "SELECT id FROM orders WHERE status = 'pending'"
                " AND created_at < now() - interval '30 seconds' ORDER BY id LIMIT 100"
            )
            stale = [row[0] for row in cur.fetchall()]
        for order_id in stale:
            if self.stopping.is_set():
                return
            self.process(order_id)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        log.info("worker started (release %s, %s), consuming %r",
                 self.settings.release, self.settings.environment, QUEUE)
        last_sweep, backoff = 0.0, 1.0
        while not self.stopping.is_set():
            try:
                if time.monotonic() - last_sweep >= SWEEP_EVERY:
                    self.sweep()
                    last_sweep = time.monotonic()
                item = self.redis.brpop([QUEUE], timeout=POP_TIMEOUT)
                if item is None:
                    continue
                raw = item[1]
                try:
                    order_id = int(raw)
                except ValueError:
                    log.error("ignoring malformed queue entry %r", raw)
                    continue
                try:
                    self.process(order_id)
                except psycopg.Error:
                    # put it back where the next BRPOP takes it; the sweep covers a failed push
                    self.redis.rpush(QUEUE, order_id)
                    raise
                backoff = 1.0
            except (psycopg.Error, redis.RedisError, OSError) as exc:
                log.warning("%s: %s; retrying in %.0fs", type(exc).__name__, exc, backoff)
                self.drop_db()
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        self.drop_db()
        self.redis.close()
        log.info("worker stopped")
        return 0


def check(settings: Settings) -> int:
    problems = []
    try:
        with psycopg.connect(settings.database_url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        problems.append(f"database: {type(exc).__name__}: {exc}")
    try:
        redis.Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3).ping()
    except (redis.RedisError, OSError) as exc:
        problems.append(f"redis: {type(exc).__name__}: {exc}")
    if problems:
        print("; ".join(p.strip() for p in problems), file=sys.stderr)
        return 1
    print("ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="check PostgreSQL and Redis, then exit")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.check:
        return check(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Worker(settings).run()


if __name__ == "__main__":
    sys.exit(main())
