"""`flowc serve` and API tokens: no tokens on a host others can reach is refused, unless
`--insecure`; with tokens, the real server refuses what has none, WebSocket included."""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from flowc.cli.main import main
from flowc.cli.serve import (
    GC_YOUNG,
    SWITCH_INTERVAL,
    configure_logging,
    is_loopback,
    reloaded_app,
    settle_process,
)
from flowc.server.settings import get_settings
from tests.server.test_serve import FLOWC, free_port

REFUSAL = (
    "flowc: error: refusing to serve on {host} without API tokens: anyone who can reach it "
    "could run flows and read every run; set FLOWC_API_TOKENS or FLOWC_API_TOKENS_FILE "
    "(`flowc token new` makes a token), or pass --insecure to serve it open\n"
)
TOKEN = "serve-token-0123456789"


class NoServer:
    """Stands in for uvicorn: `flowc serve` gets as far as serving, and returns."""

    started: ClassVar[list[Any]] = []

    def __init__(self, config: Any, app: Any) -> None:
        self.config = config

    def run(self) -> None:
        NoServer.started.append(self.config.host)


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """`flowc serve` without serving; the hosts it would have served on."""
    NoServer.started = []
    monkeypatch.setattr("flowc.cli.serve._DrainingServer", NoServer)
    yield NoServer.started


@pytest.fixture
def tokens_from(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Forget the settings read so far, before and after (a test sets the environment)."""
    monkeypatch.delenv("FLOWC_API_TOKENS", raising=False)
    monkeypatch.delenv("FLOWC_API_TOKENS_FILE", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "flowc.example.com", ""])
def test_serve_without_tokens_on_an_open_host_is_refused(
    host: str,
    sqlite_url: str,
    tokens_from: None,
    no_server: list[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--host", host]) == 2
    assert capsys.readouterr() == ("", REFUSAL.format(host=host or "every interface"))
    assert no_server == []


def test_insecure_serves_it_open_with_a_warning(
    sqlite_url: str, tokens_from: None, no_server: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--insecure"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(
        "flowc: warning: serving on 0.0.0.0 without API tokens (--insecure): anyone who can "
        "reach it can use the API\n"
    )
    assert no_server == ["0.0.0.0"]


def test_with_tokens_an_open_host_is_served(
    sqlite_url: str,
    tokens_from: None,
    no_server: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FLOWC_API_TOKENS", f"{TOKEN},another-token-0123")
    assert main(["serve", "--host", "0.0.0.0"]) == 0
    err = capsys.readouterr().err
    assert "flowc: 2 API token(s): every route but /healthz needs one\n" in err
    assert "warning" not in err
    assert no_server == ["0.0.0.0"]


def test_a_bad_token_file_stops_serve_in_one_line(
    sqlite_url: str,
    tokens_from: None,
    no_server: list[Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FLOWC_API_TOKENS_FILE", str(tmp_path / "missing"))
    assert main(["serve"]) == 2
    assert capsys.readouterr() == (
        "",
        "flowc: error: invalid settings in the environment: FLOWC_API_TOKENS_FILE: cannot "
        f"read {tmp_path / 'missing'}: No such file or directory\n",
    )
    assert no_server == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("0.0.0.0", False),
        ("::", False),
        ("128.0.0.1", False),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_served_api_refuses_what_has_no_token(tmp_path: Path) -> None:
    """The real `flowc serve` with a token: 401 without it (WebSocket too), quietly logged."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        "FLOWC_API_TOKENS": TOKEN,
    }
    with log_path.open("w+") as log:
        server = subprocess.Popen(
            [str(FLOWC), "serve", "--port", str(port)], env=env, stdout=log, stderr=log
        )
        try:
            answers = asyncio.run(_ask(f"127.0.0.1:{port}", server, log_path))
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert answers == {"healthz": 200, "tools": 401, "tools with the token": 200, "ws": 401}
    output = log_path.read_text()
    assert "flowc: 1 API token(s): every route but /healthz needs one\n" in output
    assert "ERROR" not in output and "Traceback" not in output, output


async def _ask(address: str, server: subprocess.Popen[bytes], log: Path) -> dict[str, int]:
    answers: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        for _ in range(600):  # a bound on a broken start-up (60 s), not a timing assertion
            if server.poll() is not None:
                pytest.fail(f"flowc serve exited with {server.returncode}:\n{log.read_text()}")
            try:
                answers["healthz"] = (await client.get("/healthz")).status_code
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        answers["tools"] = (await client.get("/tools")).status_code
        with_token = await client.get("/tools", headers={"authorization": f"Bearer {TOKEN}"})
        answers["tools with the token"] = with_token.status_code
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://{address}/ws/graph/3f1f5c54-8a4b-4f0e-9a57-1d7a0a3c2b11"):
            pass
    answers["ws"] = refused.value.response.status_code
    return answers


def test_serve_help_names_insecure(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    assert "--insecure" in capsys.readouterr().out


def test_a_server_hands_the_gil_over_quickly_and_collects_the_young_less_often() -> None:
    before, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(0.005)  # Python's defaults (another test may have served in process)
    gc.set_threshold(700, 10, 10)
    try:
        settle_process()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
        assert gc.get_freeze_count() == 0  # a frozen heap makes full collections frequent
        assert gc.get_threshold() == (GC_YOUNG, 10, 10)  # the older generations as they were
    finally:
        sys.setswitchinterval(before)
        gc.set_threshold(*thresholds)


@pytest.fixture
def flowc_logger() -> Iterator[logging.Logger]:
    """The `flowc` logger, put back as it was afterwards (`configure_logging` is global)."""
    logger = logging.getLogger("flowc")
    handlers, level = list(logger.handlers), logger.level
    logger.handlers = []
    yield logger
    logger.handlers, logger.level = handlers, level


def test_flowc_log_lines_have_their_time_and_level_and_info_is_kept(
    flowc_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging()
    configure_logging()  # once per process: no line twice
    logging.getLogger("flowc.server").info("the database refused a write: %s", "why")
    logging.getLogger("flowc.server").debug("not shown")
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO flowc\.server: "
        r"the database refused a write: why\n",
        err,
    ), err
    assert len(flowc_logger.handlers) == 1


def test_reload_serves_an_application_that_logs_as_serve_does(
    sqlite_url: str,
    tokens_from: None,
    flowc_logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import uvicorn

    served: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append((app, options)))
    assert main(["serve", "--reload"]) == 0
    ((target, options),) = served
    assert options["factory"] is True and options["reload"] is True
    # What the reloader's child process does with it: the application, and log lines.
    module, name = target.split(":")
    assert getattr(importlib.import_module(module), name) is reloaded_app
    assert isinstance(reloaded_app(), FastAPI)
    capsys.readouterr()
    logging.getLogger("flowc.server").info("from the child")
    assert re.search(r" INFO flowc\.server: from the child\n", capsys.readouterr().err)
