"""Environment -> `Settings`: the server's one configuration object."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from flowc.compiler.program import MAX_MAX_STEPS
from flowc.runtime.state import (
    DEFAULT_MAX_INPUT_BYTES,
    DEFAULT_MAX_STATE_BYTES,
    DEFAULT_MAX_STRING_LENGTH,
    DEFAULT_SLICE_MS,
    DEFAULT_SLICE_STEPS,
    Limits,
)

#: The most steps a flow may ask for on a server unless `FLOWC_MAX_STEPS_LIMIT` says (ten
#: times the language's default): a run holds its steps until it ends, about 4 KB each.
SERVER_MAX_STEPS = 10_000

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
    #: steps after it); a state of more than 4 KiB of JSON, every this many for each 4 KiB
    #: begun, at most ten times this many (`server/execution.py`, `snapshot_spacing`).
    snapshot_steps: int = Field(default=100, ge=1)
    #: Runs one worker (or `flowc serve`'s embedded worker) executes at once.
    worker_concurrency: int = Field(default=100, ge=1, le=10_000)
    #: Whether `flowc serve` executes runs itself (`--no-worker` turns it off).
    worker: bool = True
    #: Seconds a stopping server or worker lets runs finish their step before releasing them.
    shutdown_grace: float = Field(default=10.0, ge=0, le=3600)

    # -- auth: bearer tokens and what each may do (docs/api.md, "Authentication") --------
    #: Bearer tokens, separated by commas.  With any token set (here or in the file), every
    #: route but `/healthz` needs `Authorization: Bearer <token>`; unset, the API is open.
    api_tokens: SecretStr = Field(default=SecretStr(""))
    #: A file of hashed tokens, one `sha256:<64 hex digits> [name]` a line (`#` comments);
    #: `flowc token new` makes a token and its line.  Read when the server starts.
    api_tokens_file: str | None = None
    #: Requests a second each token may make to this process, on average (0: no limit).
    token_rate: float = Field(default=20.0, ge=0, allow_inf_nan=False)
    #: Requests a token may make in one burst, above its rate (the size of its bucket).
    token_burst: int = Field(default=40, ge=1)
    #: Runs each token may have queued or running, started through this process (0: no
    #: limit).  Each replica counts its own: N replicas let a token run N times as many.
    token_max_runs: int = Field(default=10, ge=0)

    # -- reads: pages of steps, and WebSocket followers (docs/api.md) ---------------------
    #: Steps in a page of `GET /graph/state/{run_id}/steps` without `limit` (at most the
    #: max): a run within the default `max_steps` fits one page.
    steps_page_default: int = Field(default=1000, ge=1, le=100_000)
    #: The most steps a page may hold (a larger `limit` is a 422): a page of 1000 small
    #: steps is about 150 KB and holds the event loop for tens of milliseconds.
    steps_page_max: int = Field(default=1000, ge=1, le=100_000)
    #: Seconds a WebSocket client may leave one message untaken before it is dropped (1008).
    ws_send_timeout: float = Field(default=10.0, gt=0, le=3600, allow_inf_nan=False)
    #: Live events that may wait for one WebSocket client; a client further behind is
    #: caught up from the database instead (memory stays bounded).
    ws_queue_events: int = Field(default=1000, ge=1, le=1_000_000)

    # -- limits: what one run may hold and do (docs/runtime.md, "Limits") -----------------
    #: Largest input of `POST /graph/run`, as JSON bytes (estimated; 413 above it).
    max_input_bytes: int = Field(default=DEFAULT_MAX_INPUT_BYTES, ge=1)
    #: Largest state a run may reach, as JSON bytes (estimated; the run fails `limit`).
    max_state_bytes: int = Field(default=DEFAULT_MAX_STATE_BYTES, ge=1)
    #: Longest string (or key) in an input or a state, in characters.
    max_string_length: int = Field(default=DEFAULT_MAX_STRING_LENGTH, ge=1)
    #: The most a flow's `set max_steps` may ask for; a flow asking more is refused (422).
    max_steps_limit: int = Field(default=SERVER_MAX_STEPS, ge=1, le=MAX_MAX_STEPS)
    #: Steps a run may take on the event loop before it lets other work in.
    slice_steps: int = Field(default=DEFAULT_SLICE_STEPS, ge=1, le=1_000_000)
    #: Milliseconds a run may hold the event loop before it lets other work in.
    slice_ms: float = Field(default=DEFAULT_SLICE_MS, gt=0, le=10_000, allow_inf_nan=False)

    def limits(self) -> Limits:
        """The runtime's `Limits` from these settings, named as `FLOWC_*` in messages."""
        return Limits(
            max_input_bytes=self.max_input_bytes,
            max_state_bytes=self.max_state_bytes,
            max_string_length=self.max_string_length,
            max_steps_limit=self.max_steps_limit,
            slice_steps=self.slice_steps,
            slice_ms=self.slice_ms,
            prefix="FLOWC_",
        )


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


def asyncpg_dsn(url: str) -> str:
    """`postgresql+asyncpg://...` (`async_url`'s) -> asyncpg's own `postgresql://...`.

    What every PostgreSQL connection of the server is opened with, so that the run log's
    and the engine's connections read one URL the same way (asyncpg's way).
    """
    return "postgresql://" + url.removeprefix("postgresql+asyncpg://")
