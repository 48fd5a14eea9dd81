"""The Docker image, built without Docker: the Dockerfile's own steps, replayed, then served.

`tests/packaging/dockerfile.py` replays each stage in a folder of its own, with a new
virtual environment for the base image's Python.  The server then starts as the image
starts it (its `CMD`, from its `WORKDIR`, with its `ENV`), alone on the embedded database
and with the `api` service's environment from `docker-compose.yml` on PostgreSQL.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from tests.packaging.conftest import (
    ROOT,
    Server,
    clean_environment,
    free_port,
    new_environment,
    run,
)
from tests.packaging.dockerfile import Build, Stage
from tests.server.databases import postgres_database

pytestmark = pytest.mark.timeout(600)

ONE_LINER = "analyze -> style -> score; score ? score<80 -> refine : end"


def _run_step(command: str, cwd: Path, env: dict[str, str]) -> None:
    run(["sh", "-c", command], cwd=cwd, env=env)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Stage:
    """The image's final stage, built by replaying the Dockerfile."""
    build = Build(
        context=ROOT,
        folder=tmp_path_factory.mktemp("image"),
        new_python=new_environment,
        environment=clean_environment,
        run=_run_step,
    )
    return build.replay((ROOT / "Dockerfile").read_text())


def test_the_image_builds_from_the_wheel_with_only_account_steps_skipped(image: Stage) -> None:
    assert image.skipped == ["useradd --create-home --uid 1000 flowc", "chown flowc /data"]
    assert sorted(p.name for p in image.root.iterdir()) == ["data", "wheels"]  # no sources
    assert [p.name for p in image.path("/wheels").iterdir()] == ["flowc-0.1.0-py3-none-any.whl"]
    (record,) = image.bin_dir.parent.glob("lib/python*/site-packages/flowc-*.dist-info/RECORD")
    assert "flowc/server/routes/graphs.py" in record.read_text()
    assert (image.workdir, image.exposed) == ("/data", [8000])
    assert image.command == ["flowc", "serve", "--host", "0.0.0.0"]


def compose_api() -> dict[str, Any]:
    """The `api` service of `docker-compose.yml`."""
    api: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][
        "api"
    ]
    return api


def compose_api_environment(database: str) -> dict[str, str]:
    """The `api` service's environment, its database URL pointed at a local test database."""
    environment: dict[str, str] = dict(compose_api()["environment"])
    url, local = urlsplit(environment["DATABASE_URL"]), urlsplit(database)
    # Same scheme and path shape; the host, user and database name are this machine's.
    environment["DATABASE_URL"] = urlunsplit(url._replace(netloc=local.netloc, path=local.path))
    return environment


@pytest.fixture
def database() -> Iterator[str]:
    """A new PostgreSQL database, dropped after the test."""
    yield from postgres_database()


@pytest.fixture(params=["alone", "compose"])
def started(
    request: pytest.FixtureRequest, image: Stage, tmp_path: Path
) -> Iterator[tuple[Server, Stage]]:
    """The image's command serving: on its own (SQLite in /data, with an API token, as
    `docker run -e FLOWC_API_TOKENS=...` would), or as compose runs it (its own command)."""
    extra, command, token = dict(image.env), image.command, None
    if request.param == "compose":
        extra.update(compose_api_environment(request.getfixturevalue("database")))
        command = compose_api()["command"]
    else:
        token = extra["FLOWC_API_TOKENS"] = "image-test-token"
    port = free_port()  # the container's 8000 is a free port here
    workdir = image.path(image.workdir)
    server = Server(
        [*command, "--port", str(port)],
        cwd=workdir,
        env=clean_environment(image.bin_dir, **extra),
        port=port,
        token=token,
    )
    try:
        server.wait_until_healthy()
        yield server, image
    finally:
        server.stop()


def test_the_image_serves_and_its_healthcheck_passes(started: tuple[Server, Stage]) -> None:
    server, image = started
    port = server.url.rsplit(":", 1)[1]
    check = [part.replace(":8000/", f":{port}/") for part in image.healthcheck]
    assert check != image.healthcheck  # the port was found and moved
    healthy = subprocess.run(
        check, env=clean_environment(image.bin_dir), capture_output=True, timeout=30, check=False
    )
    assert healthy.returncode == 0, healthy.stderr
    run = server.create_and_run(ONE_LINER, {"code": "print('hi')\n"})
    assert run["status"] == "succeeded"
    assert "Traceback" not in server.output()


def test_the_image_alone_refuses_to_serve_open_without_tokens(image: Stage) -> None:
    refused = subprocess.run(
        [*image.command, "--port", str(free_port())],
        cwd=image.path(image.workdir),
        env=clean_environment(image.bin_dir, **image.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "refusing to serve on 0.0.0.0 without API tokens" in refused.stderr
    assert "FLOWC_API_TOKENS" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_compose_serves_open_only_on_the_hosts_loopback() -> None:
    api = compose_api()
    assert api["command"] == ["flowc", "serve", "--host", "0.0.0.0", "--insecure"]
    assert all(port.startswith("127.0.0.1:") for port in api["ports"])
