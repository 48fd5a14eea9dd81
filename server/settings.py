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
    #: Steps an `async`-durability run writes per batch.
    async_batch_steps: int = 50


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
