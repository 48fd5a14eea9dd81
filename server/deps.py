"""Request -> what a route needs: database, session, run service, settings, registry, graph.

The graph comes from a JSON body or from flow text (`text/plain`).  Runs started through
`CountedRuns` count against the request's API token (`FLOWC_TOKEN_MAX_RUNS`).  The objects
live on `app.state` (the lifespan puts them there); the `Annotated` aliases are what
routes declare.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, cast

from fastapi import Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import HTTPConnection

from flowc.runtime import Registry
from flowc.runtime.events import RunResult
from flowc.server import store
from flowc.server.auth import RUNS_RETRY_AFTER, RunLedger, Token, request_token
from flowc.server.db import Database
from flowc.server.errors import is_json, media_type
from flowc.server.models import WorkflowDefinition
from flowc.server.runlog import ENDED, Created
from flowc.server.runs import Durability, RunService
from flowc.server.schemas import GraphInput
from flowc.server.settings import Settings

#: Charsets a `text/plain` body may declare (the flow language is UTF-8).
TEXT_CHARSETS = (None, "utf-8", "utf8", "us-ascii", "ascii")


# The dependencies below are `async def` although they do not wait: FastAPI runs a plain
# `def` dependency in a worker thread, a hand-over that costs more than the lookup.


def _state(connection: HTTPConnection, name: str) -> Any:
    return getattr(connection.app.state, name)


async def get_database(connection: HTTPConnection) -> Database:
    """The application's database."""
    return cast(Database, _state(connection, "db"))


async def get_runs(connection: HTTPConnection) -> RunService:
    """The application's run service."""
    return cast(RunService, _state(connection, "runs"))


async def get_app_settings(connection: HTTPConnection) -> Settings:
    """The application's settings."""
    return cast(Settings, _state(connection, "settings"))


async def get_registry(connection: HTTPConnection) -> Registry:
    """The tool registry the application runs and checks flows with."""
    return cast(Registry, _state(connection, "registry"))


class CountedRuns:
    """The run service as one request sees it: the runs it starts count against its token."""

    def __init__(self, runs: RunService, ledger: RunLedger, token: Token | None) -> None:
        self.runs = runs
        self.ledger = ledger
        self.token = token

    async def definition(self, definition_id: uuid.UUID) -> WorkflowDefinition | None:
        """A saved graph (see `RunService.definition`)."""
        return await self.runs.definition(definition_id)

    async def result(self, run_id: uuid.UUID) -> RunResult:
        """Wait until the run ends (see `RunService.result`)."""
        return await self.runs.result(run_id)

    async def start(
        self,
        *,
        definition: WorkflowDefinition,
        input: dict[str, Any],
        durability: Durability = "sync",
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> Created:
        """Start a run (see `RunService.start`); 429 when the token has as many as it may."""
        token = self.token if self.ledger.max_runs else None  # 0: no limit, nothing kept
        slot = self.ledger.reserve(token) if token is not None else None
        if token is not None and slot is None:
            await self._forget_ended(token)
            slot = self.ledger.reserve(token)
            if slot is None:
                raise HTTPException(
                    status_code=429,
                    detail=f"token `{token.name}` has {self.ledger.max_runs} runs queued or "
                    "running, as many as it may (FLOWC_TOKEN_MAX_RUNS): start more when "
                    "one ends",
                    headers={"Retry-After": str(RUNS_RETRY_AFTER)},
                )
        try:
            created = await self.runs.start(
                definition=definition,
                input=input,
                durability=durability,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
            )
        except BaseException:
            if slot is not None:
                slot.free()
            raise
        if slot is not None:
            slot.hold(created.run_id)
        return created

    async def _forget_ended(self, token: Token) -> None:
        """Ask the database which of the token's runs ended (it knows, wherever they ran).

        A run that waits at a wait node counts as ended: it is neither queued nor running.
        """
        ended = []
        async with self.runs.db.session() as session:
            for run_id in self.ledger.started(token):
                run = await store.get_run(session, run_id=run_id)
                if run is None or run.status in ENDED or run.status == "waiting":
                    ended.append(run_id)
        self.ledger.ended(token, ended)


async def get_counted_runs(connection: HTTPConnection) -> CountedRuns:
    """The run service, counting the runs started against the request's token."""
    runs = cast(RunService, _state(connection, "runs"))
    ledger = cast(RunLedger, _state(connection, "run_ledger"))
    return CountedRuns(runs, ledger, request_token(connection))


DatabaseDep = Annotated[Database, Depends(get_database)]


async def get_session(db: DatabaseDep) -> AsyncIterator[AsyncSession]:
    """A session for one request, closed after it."""
    async with db.session() as session:
        yield session


async def get_graph_input(
    request: Request,
    name: Annotated[str | None, Query(description="the graph's name, for a text body")] = None,
) -> GraphInput:
    """The graph in the body: JSON `{"name"?, "source" | "ir"}`, or flow text (`text/plain`)."""
    kind, charset = media_type(request)
    if is_json(kind):
        data = await request.json()
    elif kind == "text/plain":
        if charset not in TEXT_CHARSETS:
            raise HTTPException(status_code=415, detail="send the flow text as UTF-8")
        data = {"name": name, "source": _utf8(await request.body())}
    else:
        raise HTTPException(
            status_code=415,
            detail="send JSON (`Content-Type: application/json`) "
            "or the flow text (`Content-Type: text/plain`)",
        )
    try:
        return GraphInput.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        detail = f"the flow text is not UTF-8: byte {body[exc.start]:#04x} at offset {exc.start}"
        raise HTTPException(status_code=400, detail=detail) from None


SessionDep = Annotated[AsyncSession, Depends(get_session)]
RunsDep = Annotated[RunService, Depends(get_runs)]
CountedRunsDep = Annotated[CountedRuns, Depends(get_counted_runs)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
GraphInputDep = Annotated[GraphInput, Depends(get_graph_input)]
