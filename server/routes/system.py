"""Operational requests -> the registered tools, and whether the server and database answer."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException
from sqlalchemy import text

from flowc.server.deps import DatabaseDep, RegistryDep
from flowc.server.errors import StrictJSONRoute
from flowc.server.schemas import Health, Problem, ToolOut

router = APIRouter(tags=["system"], route_class=StrictJSONRoute)
#: `/healthz` alone: it needs no API token, since a load balancer's probe cannot send one.
health_router = APIRouter(tags=["system"], route_class=StrictJSONRoute)

#: Seconds the database has to answer a health check.
HEALTH_TIMEOUT = 5.0


@router.get("/tools")
async def list_tools(registry: RegistryDep) -> list[ToolOut]:
    """Every registered tool: name, documentation and static parameters."""
    return [ToolOut.model_validate(tool.spec) for tool in registry]


@health_router.get(
    "/healthz",
    responses={503: {"model": Problem, "description": "the database does not answer"}},
)
async def healthz(db: DatabaseDep) -> Health:
    """`ok` when the database answers `SELECT 1`; 503 when it does not."""

    async def ping() -> None:
        async with db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(ping(), HEALTH_TIMEOUT)
    except Exception as exc:  # whatever the reason, the answer is the same: not healthy
        detail = f"the database does not answer: {type(exc).__name__}"
        raise HTTPException(status_code=503, detail=detail) from None
    return Health()
