"""Bad requests -> 4xx answers a person can act on; anything unexpected -> a logged 500.

Three guards: `BodySizeLimit` counts a body's bytes as they arrive (413 past the limit,
whatever `Content-Length` claims); `StrictJSONRoute` reads JSON bodies itself so that a
syntax error names its line and column (400) and a body of another type is a 415; the
handlers give every error the `{"detail": ...}` shape.
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
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowc.server.schemas import MAX_JSON_DEPTH

logger = logging.getLogger("flowc.server")

#: What a 500 says; the details go to the log, not to the client.
INTERNAL_ERROR = "internal server error; the server's log has the details"


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


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": INTERNAL_ERROR})


def install_error_handlers(app: FastAPI) -> None:
    """Answer validation errors as `{"detail": [{loc, msg, type}]}` and the unexpected as 500."""
    app.add_exception_handler(RequestValidationError, _invalid_request)
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
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
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
