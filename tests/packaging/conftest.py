"""Packaging fixtures: the wheel built from this checkout, and Python environments outside it.

The tests here use flowc as users get it: a wheel installed into a new virtual environment
in a temporary folder, run from another folder, with nothing of the checkout on its path.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import venv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).parents[2]

#: Seconds a server started here has to answer `/healthz`.
START_TIMEOUT = 60.0


def run(
    command: list[str], *, cwd: Path, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end; its output, and a failure that shows both streams."""
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def clean_environment(bin_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment with `bin_dir` first on PATH and nothing pointing at the
    checkout or at its virtual environment."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "DATABASE_URL"}
        and not key.startswith("FLOWC_")
    }
    paths = [p for p in environment.get("PATH", "").split(os.pathsep) if p]
    outside = [p for p in paths if Path(sys.prefix) not in Path(p).parents]
    environment["PATH"] = os.pathsep.join([str(bin_dir), *outside])
    environment.update(extra)
    return environment


def new_environment(folder: Path) -> Path:
    """A new virtual environment (with pip) at `folder`; its `bin` folder."""
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    return folder / "bin"


def free_port() -> int:
    """A TCP port on the loopback nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """A `flowc serve` process started from a command, stopped when done."""

    def __init__(
        self,
        command: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        port: int,
        token: str | None = None,
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        #: What each request but `/healthz` sends: the bearer token, when the server has tokens.
        self.auth = {"authorization": f"Bearer {token}"} if token else {}
        self.log = cwd / "server.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_until_healthy(self) -> None:
        """Poll `/healthz` until it answers 200; fail with the server's log if it does not."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"no answer from {self.url}/healthz in {START_TIMEOUT} s:\n{self.output()}")

    def create_and_run(self, flow: str, initial: dict[str, Any]) -> dict[str, Any]:
        """Save flow text (`POST /graph/create`), run it on `initial` (`POST /graph/run`)."""
        created = httpx.post(
            f"{self.url}/graph/create",
            content=flow,
            headers={"content-type": "text/plain", **self.auth},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        ran = httpx.post(
            f"{self.url}/graph/run",
            json={"graph_id": created.json()["graph_id"], "input": initial},
            headers=self.auth,
            timeout=60,
        )
        assert ran.status_code == 200, ran.text
        result: dict[str, Any] = ran.json()
        return result

    def output(self) -> str:
        """What the server printed so far."""
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop in 20 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip wheel .` builds from this checkout, as CI and the Dockerfile build it."""
    dist = tmp_path_factory.mktemp("dist")
    build = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(ROOT)],
        cwd=dist,
    )
    assert "deprecat" not in (build.stdout + build.stderr).lower(), build.stderr
    (built,) = dist.glob("flowc-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A new virtual environment outside the checkout with the wheel installed; its `bin`."""
    bin_dir = new_environment(tmp_path_factory.mktemp("venv") / "env")
    run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        cwd=wheel.parent,
        env=clean_environment(bin_dir),
    )
    yield bin_dir
