"""Queue worker: takes order ids from the Redis list `orders` and marks the orders done.

    python -m app.worker           run until SIGTERM/SIGINT; the current order is
                                   finished first, then the process exits 0
    python -m app.worker --check   exit 0 if PostgreSQL and Redis are reachable
                                   (used as the worker's health check)

A reliable queue: BLMOVE takes an order id from `orders` into this worker's own
processing list (`orders:processing:<worker>`) in one atomic step, and the id is
removed from there (LREM) only once the order is done. So:

- a graceful stop (SIGTERM, what `headway deploy` sends to the old release) finishes
  the order in hand, takes no new one and exits: every order is processed exactly
  once, provided an order takes less than the role's `stop_timeout`;
- a worker killed mid-order (SIGKILL at the stop timeout, OOM, power loss) leaves the
  id in its processing list; once its heartbeat (`orders:worker:<worker>`) has
  expired another worker moves it back to `orders`, and a restarted worker takes
  back its own list at start: at least once. Marking an order done is idempotent
  (`... WHERE status = 'pending'`), so a redelivered order is not done twice.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType

import psycopg
import redis

from app.config import QUEUE, Settings

log = logging.getLogger("shop.worker")

POP_TIMEOUT = 1          # seconds BLMOVE blocks, so a stop request is noticed within a second
SWEEP_EVERY = 30.0       # seconds between sweeps for orders that never reached the queue
# a worker is taken for dead when it has not said it is alive for HEARTBEAT_TTL seconds (it says so every
# quarter of that, also in the middle of a long order); live workers look for dead ones twice per TTL
HEARTBEAT_TTL = max(2, int(os.environ.get("HEARTBEAT_TTL", "20")))
HEARTBEAT_EVERY = HEARTBEAT_TTL / 4
RECOVER_EVERY = HEARTBEAT_TTL / 2
MAX_BACKOFF = 10.0
WORKERS = f"{QUEUE}:workers"


def processing_list(worker_id: str) -> str:
    return f"{QUEUE}:processing:{worker_id}"


def heartbeat_key(worker_id: str) -> str:
    return f"{QUEUE}:worker:{worker_id}"


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=POP_TIMEOUT + 5,
                                          socket_connect_timeout=3)
        self.conn: psycopg.Connection | None = None
        # the container's hostname: stable across restarts, so a restarted worker finds its own list again
        self.id = socket.gethostname()
        self.processing = processing_list(self.id)

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

    def beat(self) -> None:
        self.redis.set(heartbeat_key(self.id), "1", ex=HEARTBEAT_TTL)

    def heartbeats(self, done: threading.Event) -> None:
        """Alive while the process is, also in the middle of a long order."""
        while not done.wait(HEARTBEAT_EVERY):
            try:
                self.beat()
            except (redis.RedisError, OSError) as exc:
                log.warning("heartbeat: %s: %s", type(exc).__name__, exc)

    def give_back(self, worker_id: str) -> int:
        """Move every id in a worker's processing list back to the queue, where the next BLMOVE takes it first."""
        moved = 0
        while self.redis.lmove(processing_list(worker_id), QUEUE, "RIGHT", "RIGHT") is not None:
            moved += 1
        return moved

    def recover(self) -> None:
        """The orders of workers whose heartbeat expired (killed, or their host lost) go back to the queue."""
        for raw in self.redis.smembers(WORKERS):
            other = raw.decode() if isinstance(raw, bytes) else str(raw)
            if other == self.id or self.redis.exists(heartbeat_key(other)):
                continue
            moved = self.give_back(other)
            if moved:
                log.warning("worker %s stopped without finishing: %s order(s) back in the queue", other, moved)
            self.redis.srem(WORKERS, other)

    def register(self) -> None:
        self.beat()
        self.redis.sadd(WORKERS, self.id)
        moved = self.give_back(self.id)  # what this worker held when it was killed, before a restart
        if moved:
            log.warning("%s order(s) left from before a restart: back in the queue", moved)

    def take(self) -> bytes | None:
        raw = self.redis.blmove(QUEUE, self.processing, POP_TIMEOUT, "RIGHT", "LEFT")
        return raw if raw is None or isinstance(raw, bytes) else str(raw).encode()

    def done(self, raw: bytes) -> None:
        self.redis.lrem(self.processing, 1, raw)

    def requeue(self, raw: bytes) -> None:
        """Back where the next BLMOVE takes it, in one step with leaving the processing list."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.lrem(self.processing, 1, raw)
        pipe.rpush(QUEUE, raw)
        pipe.execute()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        log.info("worker %s started (release %s, %s), consuming %r",
                 self.id, self.settings.release, self.settings.environment, QUEUE)
        beating = threading.Event()
        registered = False
        last_sweep, last_recover, backoff = 0.0, 0.0, 1.0
        while not self.stopping.is_set():
            try:
                if not registered:
                    self.register()
                    threading.Thread(target=self.heartbeats, args=(beating,), daemon=True).start()
                    registered = True
                if time.monotonic() - last_recover >= RECOVER_EVERY:
                    self.recover()
                    last_recover = time.monotonic()
                if time.monotonic() - last_sweep >= SWEEP_EVERY:
                    self.sweep()
                    last_sweep = time.monotonic()
                # once taken, an order is finished even if a stop request arrives meanwhile
                raw = self.take()
                if raw is None:
                    continue
                try:
                    order_id = int(raw)
                except ValueError:
                    log.error("ignoring malformed queue entry %r", raw)
                    self.done(raw)
                    continue
                try:
                    self.process(order_id)
                except psycopg.Error:
                    self.requeue(raw)  # if this fails too, recovery or the sweep brings the order back
                    raise
                self.done(raw)
                backoff = 1.0
            except (psycopg.Error, redis.RedisError, OSError) as exc:
                log.warning("%s: %s; retrying in %.0fs", type(exc).__name__, exc, backoff)
                self.drop_db()
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        beating.set()
        try:
            if registered:
                self.redis.srem(WORKERS, self.id)
                self.redis.delete(heartbeat_key(self.id))
        except (redis.RedisError, OSError) as exc:
            log.warning("could not sign off: %s: %s", type(exc).__name__, exc)
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
