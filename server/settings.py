"""Environment -> `Settings`: the server's one configuration object."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The embedded default: a SQLite file in the working directory, nothing else to install.
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./flowc.db"


class Settings(BaseSettings):
    """Server settings, read from `FLOWC_*` environment variables and `DATABASE_URL`."""

    model_config = SettingsConfigDict(env_prefix="FLOWC_", extra="ignore")

    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL")
    #: Largest request body accepted, in bytes (413 above it).
    max_body_bytes: int = 2 * 1024 * 1024
    #: `sync`, `async` or `exit`: how a run's steps reach the database unless a run says.
    default_durability: str = "sync"
    #: Seconds a claim lasts without a heartbeat; the owner renews it every third of it.
    lease_seconds: float = Field(default=15.0, gt=0.2, le=3600)
    #: Connections that write steps (group commit: each takes every run's waiting steps).
    writers: int = Field(default=2, ge=1, le=32)
    #: A running run's row gets its whole state every this many steps (recovery reads the
    #: steps after it).
    snapshot_steps: int = Field(default=100, ge=1)
    #: Runs one worker (or `flowc serve`'s embedded worker) executes at once.
    worker_concurrency: int = Field(default=100, ge=1, le=10_000)
    #: Whether `flowc serve` executes runs itself (`--no-worker` turns it off).
    worker: bool = True
    #: Seconds a stopping server or worker lets runs finish their step before releasing them.
    shutdown_grace: float = Field(default=10.0, ge=0, le=3600)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (read once)."""
    return Settings()


def async_url(url: str) -> str:
    """`postgresql://...` -> `postgresql+asyncpg://...`; other URLs as given."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url
