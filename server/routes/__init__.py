"""HTTP paths -> route functions: every router of the API, in matching order.

`api_router` holds every route that needs an API token when the server has tokens;
`health_router` holds `/healthz`, which never does.
"""

from __future__ import annotations

from fastapi import APIRouter

from flowc.server.routes import graphs, runs, stream, system
from flowc.server.routes.system import health_router

api_router = APIRouter()
# `/graph/state/...` before `/graph/{graph_id}/...`: the more specific paths match first.
api_router.include_router(runs.router)
api_router.include_router(graphs.router)
api_router.include_router(stream.router)
api_router.include_router(system.router)

__all__ = ["api_router", "health_router"]
