"""Database URL -> an async engine, sessions, and the tables created on start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from flowc.server import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from flowc.server.outage import Outage
from flowc.server.pgconnect import connect
from flowc.server.settings import async_url, asyncpg_dsn


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        options: dict[str, object] = {}
        if not self.is_sqlite:
            # A connection the database dropped (a restart) is replaced, not handed out.
            options = {"pool_size": 10, "max_overflow": 20, "pool_pre_ping": True}
        options.update(connecting(self.url))
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        #: What this process says of the database's outages: everything that reaches the
        #: database through this object or its run log tells it of failures and successes.
        self.outage = Outage()

    async def create_tables(self) -> None:
        """Create any missing tables."""
        async with self.engine.begin() as connection:
            await connection.run_sync(SQLModel.metadata.create_all)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session that is closed afterwards (commit is the caller's)."""
        async with self.sessions() as session:
            yield session

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def connecting(url: str) -> dict[str, object]:
    """The engine options that open `url`'s connections: on PostgreSQL, as the run log's.

    Through `pgconnect`, from the URL read as asyncpg reads it (`asyncpg_dsn`): a request
    cancelled while its connection opens leaves no error behind in a future nothing
    awaits, and every connection of the process takes the same parameters.
    """
    if url.startswith("postgresql+asyncpg://"):
        return {"async_creator": partial(connect, asyncpg_dsn(url))}
    return {}


def _sqlite_pragmas(connection: object, record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def database_away(exc: BaseException) -> bool:
    """True for failures that mean the database cannot be reached (or is restarting)."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionError, TimeoutError, OSError)):
            return True
        if isinstance(current, (OperationalError, InterfaceError)):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(("08", "57P", "53")):
            return True
        name = type(current).__name__
        if name in ("ConnectionDoesNotExistError", "InterfaceError", "CannotConnectNowError"):
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False
