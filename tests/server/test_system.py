"""`/tools`, `/healthz`, the OpenAPI docs, and how the application is built."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from flowc.runtime import REGISTRY
from flowc.server.app import create_app
from flowc.server.db import Database
from flowc.server.deps import get_database
from flowc.server.settings import Settings
from tests.server.conftest import ROOT, create_graph, make_settings

#: Nothing listens on port 1.
UNREACHABLE = "postgresql+asyncpg://flowc:secret@127.0.0.1:1/flowc"


@pytest.mark.asyncio
async def test_tools_lists_every_registered_tool(client: httpx.AsyncClient) -> None:
    tools = (await client.get("/tools")).json()
    assert [tool["name"] for tool in tools] == [tool.spec.name for tool in REGISTRY]
    refine = next(tool for tool in tools if tool["name"] == "refine_code")
    spec = REGISTRY.specs()["refine_code"]
    assert refine == {
        "name": "refine_code",
        "summary": spec.summary,
        "doc": spec.doc,
        "params": [
            {
                "name": "max_fixes",
                "kind": "positional_or_keyword",
                "required": False,
                "default": "10",
                "annotation": "int",
                "type": "int",
            }
        ],
        "is_async": False,
        "blocking": False,
        "reads": [
            {"name": "code", "type": "str", "required": True},
            {"name": "attempts", "type": "int", "required": False},
        ],
        "writes": [
            {"name": "code", "type": "str", "required": False},
            {"name": "attempts", "type": "int", "required": True},
            {"name": "fixes", "type": "list[dict]", "required": True},
            {"name": "refine_note", "type": "str", "required": True},
        ],
    }
    assert refine["summary"].startswith("Rewrite up to `max_fixes` fixable findings")


@pytest.mark.asyncio
async def test_healthz_asks_the_database(app: FastAPI, client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "database": "ok"})
    broken = Database(UNREACHABLE)
    app.dependency_overrides[get_database] = lambda: broken
    try:
        response = await client.get("/healthz")
    finally:
        app.dependency_overrides.clear()
        await broken.dispose()
    assert response.status_code == 503
    assert response.json()["detail"].startswith("the database does not answer: ")
    assert "secret" not in response.text


#: The assets each docs page loads, their media types, and a name each must define.
DOCS_PAGES = {
    "/docs": [
        ("/docs-assets/swagger-ui.css", "text/css; charset=utf-8", b".swagger-ui"),
        ("/docs-assets/favicon.png", "image/png", b"PNG"),
        ("/docs-assets/swagger-ui-bundle.js", "text/javascript; charset=utf-8", b"SwaggerUIBundle"),
    ],
    "/redoc": [
        ("/docs-assets/favicon.png", "image/png", b"PNG"),
        ("/docs-assets/redoc.standalone.js", "text/javascript; charset=utf-8", b"Redoc"),
    ],
}


@pytest.mark.asyncio
async def test_the_docs_pages_load_everything_from_the_server(client: httpx.AsyncClient) -> None:
    for page, assets in DOCS_PAGES.items():
        response = await client.get(page)
        assert response.status_code == 200
        html = response.text
        assert re.findall(r"https?://", html) == [], page
        assert re.findall(r'(?:src|href)="([^"]*)"', html) == [url for url, _, _ in assets]
        assert "/openapi.json" in html
        for url, media_type, name in assets:
            asset = await client.get(url)
            assert (asset.status_code, asset.headers["content-type"]) == (200, media_type), url
            assert name in asset.content, url
    # Swagger UI would send the document to validator.swagger.io for a badge.
    assert '"validatorUrl": null' in (await client.get("/docs")).text


@pytest.mark.asyncio
async def test_openapi_docs(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert set(schema["paths"]) == {
        "/graph/create",
        "/graph/check",
        "/graph/run",
        "/graph/cancel/{run_id}",
        "/graph/resume/{run_id}",
        "/graph/state/{run_id}",
        "/graph/state/{run_id}/steps",
        "/graph/{graph_id}",
        "/graph/{graph_id}/diagram",
        "/graph/{graph_id}/schema",
        "/tools",
        "/healthz",
    }
    create = schema["paths"]["/graph/create"]["post"]["requestBody"]["content"]
    assert set(create) == {"application/json", "text/plain"}
    run = schema["paths"]["/graph/run"]["post"]["responses"]
    assert {"200", "202", "422"} <= set(run)


def test_importing_the_app_connects_to_nothing() -> None:
    script = (
        "import sys; import flowc.server.app as m; "
        "print(type(m.app).__name__, 'asyncpg' in sys.modules, 'aiosqlite' in sys.modules)"
    )
    env = {"DATABASE_URL": UNREACHABLE, "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "FastAPI False False\n", "")


def test_a_bad_default_durability_is_refused_when_the_app_is_built() -> None:
    from flowc.server.app import create_app

    settings = Settings.model_validate({"DATABASE_URL": "sqlite://", "default_durability": "x"})
    with pytest.raises(ValueError) as raised:
        create_app(settings)
    assert str(raised.value) == "FLOWC_DEFAULT_DURABILITY must be one of sync, async, exit, not 'x'"


@pytest.mark.asyncio
async def test_the_server_loads_flowc_tools_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "team_tools.py"
    module.write_text(
        "from flowc.runtime import register_tool\n\n\n"
        "@register_tool\n"
        "def team_greeting(state, *, who: str = 'team'):\n"
        '    """Say hello."""\n'
        "    return {'greeting': 'hello ' + who}\n"
    )
    monkeypatch.setenv("FLOWC_TOOLS", str(module))
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'flowc.db'}"))
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                names = [tool["name"] for tool in (await client.get("/tools")).json()]
                assert "team_greeting" in names
                graph = await create_graph(client, "node g = team_greeting(who = 'all')\ng -> end")
                run = await client.post("/graph/run", json={"graph_id": graph, "input": {}})
                assert run.json()["state"] == {"greeting": "hello all"}
    finally:
        REGISTRY.remove("team_greeting")
