"""Bad requests -> 4xx answers a person can act on; anything unexpected -> a logged 500.

Four guards: `BodySizeLimit` counts a body's bytes as they arrive (413 past the limit,
whatever `Content-Length` claims; 400 when that header is not a number); `StrictJSONRoute`
reads JSON bodies itself so that a syntax error names its line and column (400) and a body
of another type is a 415; `WrongMethod` answers 405 for a fixed path asked with another
method; the handlers give every error the `{"detail": ...}` shape.  The `responses`
tables here document those answers in the OpenAPI document.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Match, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowc.server.db import database_away
from flowc.server.outage import Outage
from flowc.server.runlog import cause
from flowc.server.schemas import MAX_JSON_DEPTH, InvalidFlow, InvalidRequest, Problem

logger = logging.getLogger("flowc.server")

#: Most digits of a `Content-Length` read as a number (a 64-bit size has at most 19).
MAX_LENGTH_DIGITS = 18

#: What a 500 says; the details go to the log, not to the client.
INTERNAL_ERROR = "internal server error; the server's log has the details"


#: OpenAPI `responses` entries, keyed by status, for the errors routes answer.
Responses = dict[int | str, dict[str, Any]]

BAD_BODY: Responses = {
    400: {
        "model": Problem,
        "description": "the body is not JSON (the line and column are named) or not UTF-8, "
        "or `Content-Length` is not a number",
    },
    413: {"model": Problem, "description": "the body is larger than `FLOWC_MAX_BODY_BYTES`"},
    415: {"model": Problem, "description": "the body is neither JSON nor, where taken, text"},
}
#: A 422 for a parameter (path or query) that does not validate.
INVALID_PARAMETER: Responses = {
    422: {"model": InvalidRequest, "description": "a parameter is not valid: one entry per problem"}
}
#: A 422 for a JSON body: its fields do not validate, or it is nested too deep to read.
INVALID_BODY: Responses = {
    422: {
        "model": InvalidRequest | Problem,
        "description": "a field is not valid (one entry per problem), or the JSON is nested "
        f"more than {MAX_JSON_DEPTH} levels deep (a string)",
    }
}
#: A 422 for a graph: as `INVALID_BODY`, or the graph has errors (positioned diagnostics).
INVALID_GRAPH: Responses = {
    422: {
        "model": InvalidFlow | InvalidRequest | Problem,
        "description": "the flow or IR has errors (`{message, diagnostics}`), a field is not "
        f"valid (one entry per problem), or the JSON is nested more than {MAX_JSON_DEPTH} "
        "levels deep (a string)",
    }
}
#: What any route may answer when something fails on the server's side.
UNEXPECTED: Responses = {
    500: {"model": Problem, "description": "the server failed; its log has the details"},
    503: {
        "model": Problem,
        "description": "the database is not available right now (a restart, say); "
        "`Retry-After` says when to try again",
    },
}


#: What every route but `/healthz` may answer on a server with API tokens.
AUTHENTICATION: Responses = {
    401: {
        "model": Problem,
        "description": "no API token (`Authorization: Bearer <token>`), or not a valid one",
        "headers": {
            "WWW-Authenticate": {
                "description": '`Bearer realm="flowc"`, with `error="invalid_token"` '
                "for a token that is not valid",
                "required": True,
                "schema": {"type": "string"},
            }
        },
    },
    429: {
        "model": Problem,
        "description": "the token is over its request rate (`FLOWC_TOKEN_RATE`, "
        "`FLOWC_TOKEN_BURST`) or, starting a run, has as many runs queued or running as it "
        "may (`FLOWC_TOKEN_MAX_RUNS`)",
        "headers": {
            "Retry-After": {
                "description": "seconds to wait before trying again",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    },
}


def not_found_response(what: str) -> Responses:
    """The OpenAPI entry for a 404: `what` names the id that names nothing."""
    return {404: {"model": Problem, "description": f"no {what} has this id"}}


def not_found(kind: str, ident: object) -> HTTPException:
    """The 404 for an id that names nothing: `graph <id> not found`."""
    return HTTPException(status_code=404, detail=f"{kind} {ident} not found")


def media_type(request: Request) -> tuple[str, str | None]:
    """The request's media type (lower case, no parameters) and its charset, if given."""
    kind, *params = request.headers.get("content-type", "").split(";")
    charset = None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return kind.strip().lower(), charset


def is_json(kind: str) -> bool:
    """True for `application/json` and `application/*+json`."""
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def parse_json(body: bytes) -> Any:
    """A JSON body -> its value; 400 naming the line and column when it is not JSON."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        detail = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise HTTPException(status_code=400, detail=detail) from None
    except UnicodeDecodeError as exc:
        raise HTTPException(status_code=400, detail=f"the body is not UTF-8: {exc}") from None
    except RecursionError:
        detail = f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep"
        raise HTTPException(status_code=422, detail=detail) from None
    except ValueError:  # the one other way `json.loads` fails: an integer too long to read
        limit = sys.get_int_max_str_digits()
        detail = f"invalid JSON: a number has more than {limit} digits"
        raise HTTPException(status_code=400, detail=detail) from None


class StrictJSONRequest(Request):
    """A request whose `json()` is `parse_json`: the errors above instead of a bare 400."""

    async def json(self) -> Any:
        """The body as JSON, parsed once."""
        if not hasattr(self, "_strict_json"):
            self._strict_json = parse_json(await self.body())
        return self._strict_json


class StrictJSONRoute(APIRoute):
    """A route whose JSON body is read by `StrictJSONRequest`; a non-JSON body is a 415."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, given a `StrictJSONRequest`."""
        handler = super().get_route_handler()
        takes_json = self.body_field is not None

        async def strict(request: Request) -> Response:
            strict_request = StrictJSONRequest(request.scope, request.receive)
            kind = media_type(strict_request)[0]
            if takes_json and not is_json(kind) and await strict_request.body():
                raise HTTPException(
                    status_code=415,
                    detail="send a JSON object with `Content-Type: application/json`",
                )
            return await handler(strict_request)

        return strict


def _problem(error: Any) -> dict[str, Any]:
    # The input is left out: it can be large, and is what the client just sent.
    return {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error["type"]}


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": [_problem(e) for e in exc.errors()]})


#: Seconds a client is told to wait when the database is away.
RETRY_AFTER = 2
DATABASE_AWAY = "the database is not available right now; try again shortly"


#: What a failure before the app has its database is told to (no outage to add it to).
_NO_DATABASE = Outage()


def outage_of(request: Request) -> Outage:
    """The outages of the app's database (`server/outage.py`), told once each."""
    db = getattr(request.app.state, "db", None)
    return db.outage if db is not None else _NO_DATABASE


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A 503 when the database is away, else a 500 (the details go to the log)."""
    if database_away(exc):
        outage_of(request).away(f"answering {request.method} {request.url.path}", cause(exc))
        return JSONResponse(
            status_code=503,
            content={"detail": DATABASE_AWAY},
            headers={"Retry-After": str(RETRY_AFTER)},
        )
    logger.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": INTERNAL_ERROR})


def install_error_handlers(app: FastAPI) -> None:
    """Answer validation errors as `{"detail": [{loc, msg, type}]}` and the unexpected as 500."""
    app.add_exception_handler(RequestValidationError, _invalid_request)
    # Database failures are answered here, not by the catch-all below: Starlette re-raises
    # what its catch-all handled, and uvicorn then drops the client's connection.
    # (The run log turns the driver's connection failures into `ConnectionError`s.)
    from sqlalchemy.exc import SQLAlchemyError

    for kind in (SQLAlchemyError, OSError):
        app.add_exception_handler(kind, _unexpected)
    app.add_exception_handler(Exception, _unexpected)


class BodySizeLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413, counted as it comes.

    The body is read before the application sees it (it is at most `max_bytes`), so a
    chunked body or a `Content-Length` that lies is caught like any other.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer an HTTP request's body within the limit, then hand it to the application."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if isinstance(declared, str):
            detail = f"the Content-Length header is not a number of bytes: {declared!r}"
            await _answer(send, 400, detail)
            return
        if declared is not None and declared > self.max_bytes:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, send: Send) -> None:
        detail = (
            f"the request body is larger than {self.max_bytes:,} bytes "
            "(the limit is FLOWC_MAX_BODY_BYTES)"
        )
        await _answer(send, 413, detail)


async def _answer(send: Send, status: int, detail: str) -> None:
    """Send `{"detail": detail}` and close: the rest of the body is not read."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | str | None:
    """The declared body size; the header as text when it is not a number (digits only)."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for key, value in headers:
        if key == b"content-length":
            stripped = value.strip()
            if not stripped.isdigit():
                return value.decode("latin-1")
            # A number this long is over any limit; `int` would refuse thousands of digits.
            return int(stripped) if len(stripped) <= MAX_LENGTH_DIGITS else sys.maxsize
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the buffered body once, then whatever the server says next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class WrongMethod(Route):
    """A fixed path asked with a method it does not take -> 405 with an `Allow` header.

    Without it, `GET /graph/create` would be taken by `GET /graph/{graph_id}` and answered
    422 (`create` is not a UUID): Starlette answers 405 only when no route matches fully.
    """

    def __init__(self, path: str, allowed: frozenset[str]) -> None:
        super().__init__(path, _never_called, methods=allowed, include_in_schema=False)
        self.allow = ", ".join(sorted(allowed))

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """A full match for this path with a method it does not take; no match otherwise."""
        match, child_scope = super().matches(scope)
        return (Match.FULL, child_scope) if match is Match.PARTIAL else (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 405, naming the methods the path takes."""
        raise HTTPException(status_code=405, headers={"Allow": self.allow})


async def _never_called(request: Request) -> Response:
    raise AssertionError("a WrongMethod route only answers 405")


def answer_wrong_methods(router: Router) -> None:
    """Put a `WrongMethod` before the routes for every path without parameters."""
    allowed: dict[str, set[str]] = {}
    for route in iter_route_contexts(router.routes):
        if isinstance(route.original_route, WrongMethod):
            continue
        if route.path and route.methods and "{" not in route.path:
            allowed.setdefault(route.path, set()).update(route.methods)
    guards = [WrongMethod(path, frozenset(methods)) for path, methods in allowed.items()]
    router.routes[:0] = guards
