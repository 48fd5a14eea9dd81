"""`flowc worker` and `flowc serve`'s start-up checks: what an operator sees when the
database cannot take workers or its schema is old.  (Workers at work, killed and paused,
are in tests/durability/.)"""

from __future__ import annotations

import asyncio

import pytest

from flowc.cli.main import main
from flowc.server.settings import get_settings
from tests.server.test_migrations import make_v1


def test_a_worker_needs_postgresql(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("flowc: error: flowc worker needs PostgreSQL (DATABASE_URL=postgresql")
    assert "Traceback" not in err


def test_a_worker_refuses_a_concurrency_below_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    get_settings.cache_clear()
    try:
        assert main(["worker", "--concurrency", "0"]) == 2
    finally:
        get_settings.cache_clear()
    assert capsys.readouterr().err == "flowc: error: --concurrency must be at least 1, not 0\n"


def test_serve_refuses_an_old_schema_and_says_what_to_run(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(make_v1(sqlite_url))
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "the database schema is at revision 0001, this flowc needs" in err
    assert "run `flowc db upgrade` (or start with `--migrate`)" in err


def test_a_bad_lease_setting_is_one_line(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOWC_LEASE_SECONDS", "-1")
    get_settings.cache_clear()
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowc: error: invalid settings in the environment:")
    assert "lease_seconds" in err
