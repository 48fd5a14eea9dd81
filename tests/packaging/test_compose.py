"""`docker-compose.yml` agrees with itself, with the Dockerfile and with the README.

Docker does not run here, so what `docker compose up` relies on is checked as data: the
`api` service reaches the `db` service with the credentials `db` is created with, on the
port `db` listens on; the published host ports can be moved; the README says the same.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.packaging.conftest import ROOT

#: `${NAME:-default}`: a variable with a default, as compose writes it.
VARIABLE = re.compile(r"\$\{(?P<name>\w+):-(?P<default>[^}]*)\}")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The compose file's services."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    found: dict[str, Any] = compose["services"]
    return found


#: A published port: `host_ip:host_port:container_port`, the host port maybe a variable.
PORTS = re.compile(r"(?P<ip>[\d.]+):(?P<host>\$\{[^}]*\}|\d+):(?P<container>\d+)")


def published(mapping: str) -> tuple[str, str, str]:
    """`host_ip:host_port:container_port` -> its three parts, host port unexpanded."""
    match = PORTS.fullmatch(mapping)
    assert match is not None, f"not a published port: {mapping}"
    return match["ip"], match["host"], match["container"]


def test_the_api_reaches_the_database_as_it_is_created(services: dict[str, Any]) -> None:
    db = services["db"]["environment"]
    url = urlsplit(services["api"]["environment"]["DATABASE_URL"])
    assert url.scheme == "postgresql"
    assert (url.username, url.password) == (db["POSTGRES_USER"], db["POSTGRES_PASSWORD"])
    assert (url.hostname, url.port, url.path) == ("db", 5432, f"/{db['POSTGRES_DB']}")
    (mapping,) = services["db"]["ports"]
    assert published(mapping)[2] == "5432"  # the port the api's URL names
    assert services["api"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    check = " ".join(services["db"]["healthcheck"]["test"])
    assert f"-U {db['POSTGRES_USER']} -d {db['POSTGRES_DB']}" in check


def test_host_ports_can_be_moved_and_listen_on_the_loopback(services: dict[str, Any]) -> None:
    expected = {"db": ("FLOWC_DB_PORT", "5432", "5432"), "api": ("FLOWC_API_PORT", "8000", "8000")}
    for name, (variable, default, container) in expected.items():
        (mapping,) = services[name]["ports"]
        host_ip, host_port, container_port = published(mapping)
        match = VARIABLE.fullmatch(host_port)
        assert match is not None, mapping
        assert (host_ip, match["name"], match["default"], container_port) == (
            "127.0.0.1",
            variable,
            default,
            container,
        )


def test_the_api_is_the_image_this_repository_builds(services: dict[str, Any]) -> None:
    assert services["api"]["build"] == "."
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "EXPOSE 8000" in dockerfile
    assert 'CMD ["flowc", "serve", "--host", "0.0.0.0"]' in dockerfile  # on port 8000


def test_the_readme_and_the_compose_file_give_one_database_url(services: dict[str, Any]) -> None:
    db = services["db"]["environment"]
    host_url = (
        f"postgresql://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}@127.0.0.1:5432/"
        f"{db['POSTGRES_DB']}"
    )
    readme = (ROOT / "README.md").read_text()
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f"DATABASE_URL={host_url}" in readme
    assert f"DATABASE_URL={host_url}" in compose
    assert "FLOWC_DB_PORT" in readme
