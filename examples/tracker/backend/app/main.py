"""The Incident Tracker's HTTP API. Every route lives under /api: headway's proxy sends /api/* here with the
prefix kept (the role's `strip_prefix` is false), as the guide's nginx did with `location /api/`.

Run with: uvicorn app.main:app --host 0.0.0.0 --port 8000 --timeout-graceful-shutdown 10
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import BaseModel, ConfigDict, StringConstraints

from app.config import APP_NAME, Settings

log = logging.getLogger("tracker")
settings = Settings.from_env()
HOSTNAME = socket.gethostname()
HEALTH_TIMEOUT = 2.0  # seconds the health check waits for a database connection

Severity = Literal["sev1", "sev2", "sev3", "sev4"]
Status = Literal["open", "investigating", "resolved"]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=5000)]
COLUMNS = "id, title, description, severity, status, created_at, updated_at, resolved_at"


class IncidentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title
    description: Description = ""
    severity: Severity = "sev3"
    status: Status = "open"


class IncidentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title | None = None
    description: Description | None = None
    severity: Severity | None = None
    status: Status | None = None


class Incident(BaseModel):
    id: int
    title: str
    description: str
    severity: Severity
    status: Status
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


def pool(request: Request) -> AsyncConnectionPool:
    return request.app.state.pool  # type: ignore[no-any-return]


api = APIRouter(prefix="/api")


@api.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 when the API can reach PostgreSQL: what headway's health gate waits for before sending traffic."""
    try:
        async with pool(request).connection(timeout=HEALTH_TIMEOUT) as conn:
            await conn.execute("SELECT 1")
    except (psycopg.Error, PoolTimeout, OSError) as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()[:200]
        return JSONResponse({"status": "unavailable", "database": reason}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@api.get("/info")
async def info() -> dict[str, str]:
    """Which release of the API answered; the frontend shows it in its footer."""
    return {"app": APP_NAME, "release": settings.release, "environment": settings.environment,
            "hostname": HOSTNAME}


@api.get("/incidents")
async def list_incidents(request: Request, status: Status | None = None,
                         limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[Incident]:
    query = f"SELECT {COLUMNS} FROM incidents"
    params: list[Any] = []
    if status is not None:
        query += " WHERE status = %s"
        params.append(status)
    query += " ORDER BY created_at DESC, id DESC LIMIT %s"
    params.append(limit)
    async with pool(request).connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query, params)
        return [Incident(**row) for row in await cur.fetchall()]


@api.post("/incidents", status_code=201)
async def create_incident(request: Request, body: IncidentIn) -> Incident:
    async with pool(request).connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "INSERT INTO incidents (title, description, severity, status, resolved_at)"
            " VALUES (%s, %s, %s, %s, CASE WHEN %s = 'resolved' THEN now() END)"
            f" RETURNING {COLUMNS}",
            (body.title, body.description, body.severity, body.status, body.status))
        row = await cur.fetchone()
    assert row is not None
    return Incident(**row)


@api.get("/incidents/{incident_id}")
async def get_incident(request: Request, incident_id: int) -> Incident:
    async with pool(request).connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(f"SELECT {COLUMNS} FROM incidents WHERE id = %s", (incident_id,))
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, f"incident {incident_id} not found")
    return Incident(**row)


@api.patch("/incidents/{incident_id}")
async def update_incident(request: Request, incident_id: int, body: IncidentPatch) -> Incident:
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    sets: list[sql.Composable] = [sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in changes]
    sets.append(sql.SQL("updated_at = now()"))
    if "status" in changes:  # resolved_at follows the status: set when resolved, cleared when reopened
        sets.append(sql.SQL("resolved_at = CASE WHEN {s} = 'resolved' THEN coalesce(resolved_at, now()) END")
                    .format(s=sql.Placeholder("status")))
    query = sql.SQL("UPDATE incidents SET {sets} WHERE id = {id} RETURNING {cols}").format(
        sets=sql.SQL(", ").join(sets), id=sql.Placeholder("id"), cols=sql.SQL(COLUMNS))
    async with pool(request).connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(query, {**changes, "id": incident_id})
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, f"incident {incident_id} not found")
    return Incident(**row)


@api.delete("/incidents/{incident_id}", status_code=204)
async def delete_incident(request: Request, incident_id: int) -> Response:
    async with pool(request).connection() as conn:
        cur = await conn.execute("DELETE FROM incidents WHERE id = %s", (incident_id,))
        if cur.rowcount == 0:
            raise HTTPException(404, f"incident {incident_id} not found")
    return Response(status_code=204)


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: database unavailable: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    # open without waiting: the process starts while the database is still unreachable, and /api/health says
    # so until it is; `check` replaces connections a database restart broke instead of failing a request
    app.state.pool = AsyncConnectionPool(settings.database_url, min_size=1, max_size=settings.db_pool_size,
                                         timeout=5.0, open=False, name="tracker",
                                         check=AsyncConnectionPool.check_connection)
    await app.state.pool.open(wait=False)
    log.info("release %s (%s) starting on %s", settings.release, settings.environment, HOSTNAME)
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(title="Incident Tracker API", lifespan=lifespan, docs_url="/api/docs", redoc_url=None,
              openapi_url="/api/openapi.json",
              exception_handlers={psycopg.OperationalError: database_unavailable, PoolTimeout: database_unavailable})
app.include_router(api)
