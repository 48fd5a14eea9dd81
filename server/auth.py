"""A request's bearer token -> the token it names, within its limits, or a 401 or 429.

Tokens come from `FLOWC_API_TOKENS` (plain, comma-separated) and `FLOWC_API_TOKENS_FILE`
(hashed: one `sha256:<64 hex digits> [name]` a line).  Only their SHA-256 digests are
kept, and a presented token's digest is compared with every one in constant time.
`Authentication`, an ASGI middleware, asks every request but `/healthz` for a token, before
the body is read and before any route (the docs, their assets and the WebSocket included),
so that no route can be added without it.  Each token has a request rate (`RequestRate`,
a token bucket per token in this process) and a number of runs it may have queued or
running (`RunLedger`, counted by the run service's callers in this process).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from flowc.server.settings import Settings

#: How a hashed token starts in `FLOWC_API_TOKENS_FILE`.
HASH_PREFIX = "sha256:"
#: A line of the token file: the digest, then an optional name (the rest of the line).
TOKEN_LINE = re.compile(r"sha256:(?P<digest>[0-9a-f]{64})(?:\s+(?P<name>\S.*))?")
#: A token's syntax: RFC 6750's `b64token`, what `Authorization: Bearer` can carry.
TOKEN_SYNTAX = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: Random bytes in a token `flowc token new` makes (256 bits: a fast hash is safe to store).
TOKEN_BYTES = 32
#: Longest name a token may have in the file.
MAX_NAME_LENGTH = 100

#: Paths that need no token: a load balancer's health check cannot send one.
OPEN_PATHS = frozenset({"/healthz"})
#: The WebSocket subprotocol of the run stream; a browser offers it with `bearer.<token>`.
SUBPROTOCOL = "flowc.v1"
BEARER_SUBPROTOCOL = "bearer."
#: Where the middleware leaves the request's `Token` in the ASGI scope's state.
TOKEN_STATE = "flowc_token"

#: RFC 6750's challenges: no token at all, and a token that is not one of ours.
CHALLENGE = 'Bearer realm="flowc"'
INVALID_CHALLENGE = 'Bearer realm="flowc", error="invalid_token"'
#: What a request without a token is told to send.
SEND_TOKEN = (
    "this server needs an API token: send `Authorization: Bearer <token>` (on the "
    "WebSocket, or offer the subprotocols `flowc.v1` and `bearer.<token>`)"
)
#: A WebSocket refused on a server that cannot answer its handshake with a 401.
CLOSE_POLICY_VIOLATION = 1008
#: Longest close reason the WebSocket protocol allows, in UTF-8 bytes.
MAX_REASON_BYTES = 123
#: Seconds a client is told to wait when its token has as many runs as it may.
RUNS_RETRY_AFTER = 2

#: Seconds, from an arbitrary start, that only go forward (`time.monotonic`).
Clock = Callable[[], float]


class TokenFileError(ValueError):
    """The tokens in the environment or the token file cannot be read: where, and why."""


@dataclass(frozen=True)
class Token:
    """A known API token: its name (for messages) and its SHA-256 digest."""

    name: str
    digest: bytes


def token_digest(token: str) -> bytes:
    """The SHA-256 digest of a token's UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def token_line(token: str, name: str | None = None) -> str:
    """A token's line in `FLOWC_API_TOKENS_FILE`: `sha256:<hex>`, then its name if any."""
    line = HASH_PREFIX + token_digest(token).hex()
    return f"{line} {name}" if name else line


def new_token() -> str:
    """A new random token, URL- and subprotocol-safe (`A-Z a-z 0-9 - _`)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_problem(token: str) -> str | None:
    """What makes `token` unusable as a bearer token, or None."""
    if not TOKEN_SYNTAX.fullmatch(token):
        return "holds a character other than letters, digits and `-._~+/` (`=` at the end)"
    return None


def name_problem(name: str) -> str | None:
    """What makes `name` unusable as a token's name, or None."""
    if not name.isprintable() or name != name.strip() or not name:
        return "must be printable text without spaces at either end"
    if len(name) > MAX_NAME_LENGTH:
        return f"is longer than {MAX_NAME_LENGTH} characters"
    return None


class Tokens:
    """The API tokens a server knows; `find` compares a presented one with each of them."""

    def __init__(self, tokens: Iterable[Token] = ()) -> None:
        self.tokens = tuple(tokens)

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def find(self, presented: str) -> Token | None:
        """The known token `presented` is, or None; the time taken does not say which."""
        digest = token_digest(presented)
        found = None
        for token in self.tokens:  # no early exit: every digest is compared
            if hmac.compare_digest(token.digest, digest):
                found = token
        return found


def load_tokens(settings: Settings) -> Tokens:
    """The tokens of `FLOWC_API_TOKENS` and `FLOWC_API_TOKENS_FILE`; TokenFileError if bad.

    A variable that is set but names no token is an error, not an open server.
    """
    tokens: list[Token] = []
    plain = settings.api_tokens.get_secret_value()
    if plain.strip():
        entries = [entry.strip() for entry in plain.split(",")]
        for number, entry in enumerate(entries, start=1):
            if not entry:
                continue
            problem = token_problem(entry)
            if problem:  # the token itself is not repeated: it may be a real secret
                raise TokenFileError(f"FLOWC_API_TOKENS: token {number} {problem}")
            tokens.append(Token(f"FLOWC_API_TOKENS[{number}]", token_digest(entry)))
        if not tokens:
            raise TokenFileError("FLOWC_API_TOKENS is set but holds no token")
    if settings.api_tokens_file:
        tokens.extend(read_token_file(Path(settings.api_tokens_file)))
    return Tokens(_distinct(tokens))


def read_token_file(path: Path) -> list[Token]:
    """The tokens of a token file; TokenFileError naming the line that is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise TokenFileError(f"FLOWC_API_TOKENS_FILE: cannot read {path}: {reason}") from None
    tokens: list[Token] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        matched = TOKEN_LINE.fullmatch(line)
        if matched is None:  # the line is not shown: it may be a token pasted in plain
            raise TokenFileError(
                f"{path}:{number}: expected `sha256:<64 lower-case hex digits>` and an "
                "optional name (a plain token? store its line: `flowc token hash`)"
            )
        name = matched["name"]
        problem = name_problem(name) if name is not None else None
        if problem:
            raise TokenFileError(f"{path}:{number}: the token's name {problem}")
        digest = bytes.fromhex(matched["digest"])
        tokens.append(Token(name or f"{path.name}:{number}", digest))
    if not tokens:
        raise TokenFileError(f"FLOWC_API_TOKENS_FILE: {path} holds no token")
    return tokens


def _distinct(tokens: list[Token]) -> list[Token]:
    """The tokens, each digest once (the first name given to it wins)."""
    seen: dict[bytes, Token] = {}
    for token in tokens:
        seen.setdefault(token.digest, token)
    return list(seen.values())


class RequestRate:
    """A token bucket per API token: `rate` requests a second, `burst` at once; 0: no limit."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[bytes, tuple[float, float]] = {}  # digest -> (level, when)

    def take(self, token: Token) -> float:
        """0 when `token` may make a request now (it is counted); else seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        level, then = self._buckets.get(token.digest, (float(self.burst), now))
        level = min(float(self.burst), level + (now - then) * self.rate)
        if level >= 1:
            self._buckets[token.digest] = (level - 1, now)
            return 0.0
        self._buckets[token.digest] = (level, now)
        return (1 - level) / self.rate


@dataclass(eq=False)
class RunSlot:
    """A place held for one run of a token: the run's id once it is started."""

    runs: set[uuid.UUID | RunSlot]

    def hold(self, run_id: uuid.UUID) -> None:
        """The run started: it takes the place."""
        self.runs.discard(self)
        self.runs.add(run_id)

    def free(self) -> None:
        """No run started: give the place back."""
        self.runs.discard(self)


@dataclass
class RunLedger:
    """Runs each token started through this process that may still be queued or running.

    Which of them ended is asked of the database only when a token is at its limit.
    """

    max_runs: int
    _runs: dict[bytes, set[uuid.UUID | RunSlot]] = field(default_factory=dict)

    def reserve(self, token: Token) -> RunSlot | None:
        """A place for one more run of `token`; None when it has `max_runs` already."""
        runs = self._runs.setdefault(token.digest, set())
        if self.max_runs and len(runs) >= self.max_runs:
            return None
        slot = RunSlot(runs)
        runs.add(slot)
        return slot

    def started(self, token: Token) -> list[uuid.UUID]:
        """The runs `token` started that were not yet seen to end."""
        return [run for run in self._runs.get(token.digest, ()) if isinstance(run, uuid.UUID)]

    def ended(self, token: Token, run_ids: Iterable[uuid.UUID]) -> None:
        """Forget runs of `token` that ended: their places are free."""
        runs = self._runs.get(token.digest, set())
        runs.difference_update(run_ids)


class Authentication:
    """ASGI middleware: every request but `/healthz` needs a known token, within its rate.

    A refused WebSocket is answered 401 or 429 at its handshake, with the same JSON body as
    HTTP (the ASGI denial-response extension, which uvicorn has), or closed with 1008 by a
    server without it: it is never accepted, so it learns nothing of the run.
    """

    def __init__(self, app: ASGIApp, tokens: Tokens, rate: RequestRate) -> None:
        self.app = app
        self.tokens = tokens
        self.rate = rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass a request that shows a known token within its rate; refuse any other."""
        if scope["type"] not in ("http", "websocket") or _route_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        presented = presented_token(scope)
        if isinstance(presented, _Refusal):
            await _refuse(scope, receive, send, 401, presented.detail, CHALLENGE)
            return
        token = self.tokens.find(presented)
        if token is None:
            detail = "the API token is not valid"
            await _refuse(scope, receive, send, 401, detail, INVALID_CHALLENGE)
            return
        wait = self.rate.take(token)
        if wait:
            seconds = max(1, math.ceil(wait))
            detail = (
                f"token `{token.name}` is over its rate of {self.rate.rate:g} requests a "
                f"second, {self.rate.burst} at once (FLOWC_TOKEN_RATE, FLOWC_TOKEN_BURST): "
                f"try again in {seconds} s"
            )
            await _refuse(scope, receive, send, 429, detail, retry_after=seconds)
            return
        state = {**scope.get("state", {}), TOKEN_STATE: token}
        await self.app({**scope, "state": state}, receive, send)


@dataclass(frozen=True)
class _Refusal:
    detail: str


def presented_token(scope: Scope) -> str | _Refusal:
    """The token a request shows: `Authorization: Bearer`, else (WebSocket) `bearer.<token>`."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for key, value in headers:
        if key == b"authorization":
            scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                # What it holds is not repeated: it may be a token sent without `Bearer`.
                return _Refusal("the Authorization header must be `Bearer <token>`")
            return credentials.strip()
    if scope["type"] == "websocket":
        offered: list[str] = scope.get("subprotocols", [])
        for protocol in offered:
            if protocol.startswith(BEARER_SUBPROTOCOL):
                return protocol[len(BEARER_SUBPROTOCOL) :]
    return _Refusal(SEND_TOKEN)


def accepted_subprotocol(offered: Iterable[str]) -> str | None:
    """The subprotocol a WebSocket is accepted with: `flowc.v1` when offered, never a token."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


def request_token(connection: HTTPConnection) -> Token | None:
    """The token the request showed; None on a server without tokens."""
    token: Token | None = getattr(connection.state, TOKEN_STATE, None)
    return token


class BearerScheme(SecurityBase):
    """The OpenAPI side of `Authentication`: the `bearer` scheme, and the request's token."""

    def __init__(self) -> None:
        self.model = HTTPBearerModel(
            bearerFormat="an API token (FLOWC_API_TOKENS, or `flowc token new`)",
            description="`Authorization: Bearer <token>`; every route but `/healthz` needs it",
        )
        self.scheme_name = "bearer"

    async def __call__(self, connection: HTTPConnection) -> Token | None:
        """The token the middleware found (the check itself is done before any route)."""
        return request_token(connection)


BEARER = BearerScheme()


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    detail: str,
    challenge: str | None = None,
    retry_after: int | None = None,
) -> None:
    """Answer `{"detail": ...}` with `status`; a WebSocket at its handshake, or with 1008."""
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get(
        "extensions", {}
    ):
        reason = detail.encode("utf-8")[:MAX_REASON_BYTES].decode("utf-8", "ignore")
        await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION, "reason": reason})
        return
    headers = {}
    if challenge:
        headers["WWW-Authenticate"] = challenge
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(
        scope, receive, send
    )
