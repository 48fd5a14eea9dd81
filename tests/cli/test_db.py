"""`flowc db upgrade` and `flowc db current` on the database `DATABASE_URL` names."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from flowc.cli.main import main
from flowc.server.settings import get_settings
from tests.server.test_migrations import make_v1, on_connection


def test_upgrade_creates_the_schema_then_finds_it_at_the_head(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "current"]) == 0
    assert capsys.readouterr() == ("empty\n", "")
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr() == ("", f"flowc: database {sqlite_url} created at 0006\n")
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr() == ("", f"flowc: database {sqlite_url} already at 0006\n")
    assert main(["db", "current"]) == 0
    assert capsys.readouterr() == ("0006\n", "")


def test_upgrade_brings_a_database_from_before_alembic_to_the_head(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(make_v1(sqlite_url))
    assert main(["db", "current"]) == 0
    assert capsys.readouterr() == ("0001\n", "")
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr() == ("", f"flowc: database {sqlite_url} upgraded from 0001 to 0006\n")


def test_a_schema_newer_than_this_flowc_is_one_line(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    newer = "UPDATE alembic_version SET version_num = '9999'"
    asyncio.run(on_connection(sqlite_url, lambda connection: connection.execute(text(newer))))
    capsys.readouterr()
    assert main(["db", "upgrade"]) == 2
    assert capsys.readouterr() == (
        "",
        f"flowc: error: cannot upgrade the database {sqlite_url}: the database schema is at "
        "revision 9999, which this flowc does not know (its newest is 0006): this flowc is "
        "older than the database, so upgrade flowc\n",
    )


def test_a_url_no_driver_reads_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "nosuch://nowhere")
    get_settings.cache_clear()
    try:
        assert main(["db", "upgrade"]) == 2
    finally:
        get_settings.cache_clear()
    assert capsys.readouterr() == (
        "",
        "flowc: error: cannot upgrade the database nosuch://nowhere: "
        "NoSuchModuleError: Can't load plugin: sqlalchemy.dialects:nosuch\n",
    )


def test_a_database_that_is_not_there_is_one_line_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on port 1.
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://flowc:s3cret@127.0.0.1:1/flowc")
    get_settings.cache_clear()
    try:
        assert main(["db", "current"]) == 2
    finally:
        get_settings.cache_clear()
    out, err = capsys.readouterr()
    assert (out, err.count("\n"), "s3cret" in err) == ("", 1, False)
    assert err.startswith(
        "flowc: error: cannot read the database postgresql+asyncpg://flowc:***@127.0.0.1:1/flowc: "
        "ConnectionRefusedError: "
    )


def test_db_needs_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db"]) == 2
    assert capsys.readouterr().err.endswith(
        "flowc db: error: the following arguments are required: ACTION\n"
    )
