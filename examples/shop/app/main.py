"""HTTP API: orders are stored in PostgreSQL and queued in Redis for the worker.

Run with: uvicorn app.main:app --host 0.0.0.0 --port 8000 --timeout-graceful-shutdown 10
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.config import APP_NAME, QUEUE, Settings

log = logging.getLogger("shop")
settings = Settings.from_env()
HOSTNAME = socket.gethostname()
READY_TIMEOUT = 2.0  # seconds per dependency in /health/ready


def _order(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "item": row["item"],
        "qty": row["qty"],
        "status": row["status"],
        "created_at": row["created_at"].isoformat(),
        "processed_at": row["processed_at"].isoformat() if row["processed_at"] else None,
    }


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def index(request: Request) -> JSONResponse:
    if settings.fail_rate and random.random() < settings.fail_rate:
        return _error(500, "injected failure (FAIL_RATE)", release=settings.release)
    return JSONResponse({
        "app": APP_NAME,
        "release": settings.release,
        "environment": settings.environment,
        "hostname": HOSTNAME,
    })


async def health(request: Request) -> JSONResponse:
    """Liveness: the process serves requests. Touches no dependency."""
    return JSONResponse({"status": "ok"})


async def _check_db(pool: AsyncConnectionPool) -> str:
    try:
        # first replace idle connections the server closed (a restart, a restore's swap): pool.check() does it at
        # once, where a request that finds one waits out the pool's reconnection backoff (a second or more)
        await asyncio.wait_for(pool.check(), READY_TIMEOUT)
        async with pool.connection(timeout=READY_TIMEOUT) as conn:
            await conn.execute("SELECT 1")
        return "ok"
    except (psycopg.Error, PoolTimeout, OSError, TimeoutError) as exc:  # reported, never raised
        return f"error: {type(exc).__name__}: {exc}".strip()[:200]


async def _check_redis(client: aioredis.Redis) -> str:
    try:
        await asyncio.wait_for(client.ping(), READY_TIMEOUT)
        return "ok"
    except (RedisError, TimeoutError, OSError) as exc:
        return f"error: {type(exc).__name__}: {exc}".strip()[:200]


async def ready(request: Request) -> JSONResponse:
    """Readiness: 200 only when both PostgreSQL and Redis answer."""
    if settings.broken_health:
        return JSONResponse({"status": "unavailable", "reason": "BROKEN_HEALTH=1"}, status_code=503)
    db, cache = await asyncio.gather(_check_db(request.app.state.pool), _check_redis(request.app.state.redis))
    ok = db == "ok" and cache == "ok"
    return JSONResponse({"status": "ok" if ok else "unavailable", "database": db, "redis": cache},
                        status_code=200 if ok else 503)


async def create_order(request: Request) -> JSONResponse:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "body must be JSON")
    if not isinstance(body, dict):
        return _error(400, 'expected an object like {"item": "book", "qty": 1}')
    item, qty = body.get("item"), body.get("qty")
    if not isinstance(item, str) or not item.strip() or len(item) > 200:
        return _error(422, "item must be a non-empty string (at most 200 characters)")
    if not isinstance(qty, int) or isinstance(qty, bool) or not 1 <= qty <= 10_000:
        return _error(422, "qty must be an integer between 1 and 10000")

    async with request.app.state.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "INSERT INTO orders (item, qty) VALUES (%s, %s)"
            " RETURNING id, item, qty, status, created_at, processed_at",
            (item.strip(), qty),
        )
        row = await cur.fetchone()
    assert row is not None
    # queued after the commit, so the worker always finds the row; an order whose
    # push fails stays 'pending' and is picked up by the worker's periodic sweep
    try:
        await request.app.state.redis.lpush(QUEUE, row["id"])
    except (RedisError, OSError):
        log.exception("could not queue order %s", row["id"])
    return JSONResponse(_order(row), status_code=201)


async def get_order(request: Request) -> JSONResponse:
    order_id = request.path_params["order_id"]
    async with request.app.state.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT id, item, qty, status, created_at, processed_at FROM orders WHERE id = %s", (order_id,))
        row = await cur.fetchone()
    if row is None:
        return _error(404, f"order {order_id} not found")
    return JSONResponse(_order(row))


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: database unavailable: %s", request.method, request.url.path, exc)
    return _error(503, "database unavailable")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    # open without waiting: the API starts (and /health answers) while the
    # database is still unreachable; /health/ready reports it until it is
    # `check` validates a connection before handing it out, so connections
    # broken by a database restart are replaced instead of failing a request
    pool = AsyncConnectionPool(settings.database_url, min_size=1, max_size=settings.db_pool_size,
                               timeout=5.0, open=False, name="shop",
                               check=AsyncConnectionPool.check_connection)
    await pool.open(wait=False)
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=3,
                                     health_check_interval=30)
    app.state.pool, app.state.redis = pool, client
    log.info("release %s (%s) starting on %s", settings.release, settings.environment, HOSTNAME)
    try:
        yield
    finally:
        await pool.close()
        await client.aclose()


app = Starlette(
    routes=[
        Route("/", index),
        Route("/health", health),
        Route("/health/ready", ready),
        Route("/orders", create_order, methods=["POST"]),
        Route("/orders/{order_id:int}", get_order),
    ],
    lifespan=lifespan,
    exception_handlers={psycopg.OperationalError: database_unavailable, PoolTimeout: database_unavailable},
)
