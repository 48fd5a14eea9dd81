"""Durability fixtures: a private PostgreSQL cluster per module, and flowc's commands in the
background, to be signalled, paused, killed and restarted by a test.

`cluster` is skipped when PostgreSQL's server programs are missing, unless
`FLOWC_REQUIRE_POSTGRES=1` (CI), when it fails: nothing passes in CI by skipping.
`processes` starts commands (`processes.flowc("worker", ...)`, `processes.serve(url)`) with
their output in files under the test's `tmp_path`, and kills whatever still runs at the end.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_POSTGRES
from tests.durability.cluster import Cluster, ClusterUnavailable
from tests.packaging.conftest import Server, free_port

ROOT = Path(__file__).parents[2]
#: The dev environment's `flowc` script; `python -m flowc.cli.main` where there is none.
FLOWC = Path(sys.executable).with_name("flowc")
#: Seconds `Process.wait` and `Process.stop` wait: bounds for a hang, not timing assertions.
WAIT = 30.0
#: Environment overrides: a value sets a variable, None removes it.
Environment = Mapping[str, str | None]


def new_cluster() -> Cluster:
    """A new, started `Cluster`; skips the test if PostgreSQL's programs are missing (fails
    with `FLOWC_REQUIRE_POSTGRES=1`)."""
    try:
        return Cluster()
    except ClusterUnavailable as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL server of the module's own (tests may stop, crash and restart it)."""
    server = new_cluster()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def cluster_database(cluster: Cluster) -> str:
    """The URL of a new, empty database on the module's cluster (started if a test left it
    stopped)."""
    cluster.start()
    return cluster.create_database(f"flowc_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Background processes for one test, killed (and waited for) when it ends."""
    group = Processes(tmp_path / "processes")
    try:
        yield group
    finally:
        group.close()


def flowc_command(*args: str) -> list[str]:
    """The command line that runs `flowc ARGS` from this checkout's environment."""
    if FLOWC.exists():
        return [str(FLOWC), *args]
    return [sys.executable, "-m", "flowc.cli.main", *args]


class Process:
    """A command running in its own process group, its stdout and stderr in files.

    Signals go to the whole group (the command and any children it started), as a
    terminal's Ctrl-C would.
    """

    def __init__(
        self, command: Sequence[str], *, name: str, logs: Path, env: Environment | None = None
    ) -> None:
        self.command = list(command)
        self.name = name
        self.stdout_path = logs / f"{name}.stdout"
        self.stderr_path = logs / f"{name}.stderr"
        environment = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                environment.pop(key, None)
            else:
                environment[key] = value
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )

    def __repr__(self) -> str:
        return f"<{self.name} pid {self.pid}: {' '.join(self.command)}>"

    @property
    def pid(self) -> int:
        """The command's process id (and its process group's)."""
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: the signal that ended it), or None while it runs."""
        return self.process.poll()

    def kill(self, signum: int = signal.SIGKILL) -> None:
        """Send `signum` (default SIGKILL) to the process group; nothing if it has exited."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it exited since `poll`
                os.killpg(self.process.pid, signum)

    def pause(self) -> None:
        """Freeze the process group (SIGSTOP): it holds its connections and does nothing."""
        self.kill(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused process group go on (SIGCONT)."""
        self.kill(signal.SIGCONT)

    def wait(self, timeout: float = WAIT) -> int:
        """Wait for the command to exit; its exit code.  Fails the test if it does not."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self!r} still runs after {timeout} s\n{self.output()}")

    def stop(self, timeout: float = WAIT) -> None:
        """SIGTERM (after SIGCONT, should it be paused), SIGKILL if it is still running after
        `timeout` seconds; `returncode` then says how it ended."""
        self.resume()
        self.kill(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.process.wait()

    def stdout(self) -> str:
        """What the command wrote to stdout so far."""
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        """What the command wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        """Both streams so far, labelled: for failure messages."""
        return f"--- {self.name} stdout:\n{self.stdout()}--- {self.name} stderr:\n{self.stderr()}"


class FlowcServer(Process, Server):
    """A `flowc serve` process: also the packaging tests' `Server`, whose
    `wait_until_healthy()` and `create_and_run(flow, input)` speak to it over HTTP."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        port: int,
        name: str,
        logs: Path,
        env: Environment | None = None,
    ) -> None:
        super().__init__(command, name=name, logs=logs, env=env)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.auth = {}  # no API tokens: served on the loopback


class Processes:
    """The background processes of one test; `close()` kills those still running."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.started: list[Process] = []
        atexit.register(self.close)  # an interrupted run that skips the teardown

    def start(
        self, command: Sequence[str], *, env: Environment | None = None, name: str | None = None
    ) -> Process:
        """Start `command` from the checkout's root, with `env` over this environment."""
        name = self._name(name or Path(command[0]).name)
        process = Process(command, name=name, logs=self.logs, env=env)
        self.started.append(process)
        return process

    def flowc(self, *args: str, env: Environment | None = None) -> Process:
        """Start `flowc ARGS` (`processes.flowc("worker", env={"DATABASE_URL": url})`)."""
        return self.start(flowc_command(*args), env=env, name=f"flowc-{args[0] if args else ''}")

    def serve(
        self, database_url: str, *args: str, env: Environment | None = None, wait: bool = True
    ) -> FlowcServer:
        """Start `flowc serve --port PORT ARGS` on `database_url` (a free port) and, unless
        `wait` is false, wait until `/healthz` answers."""
        port = free_port()
        command = flowc_command("serve", "--port", str(port), *args)
        environment = {**(env or {}), "DATABASE_URL": database_url}
        server = FlowcServer(
            command, port=port, name=self._name("flowc-serve"), logs=self.logs, env=environment
        )
        self.started.append(server)
        if wait:
            server.wait_until_healthy()
        return server

    def close(self) -> None:
        """Kill every process still running (SIGKILL to its group) and wait for it."""
        atexit.unregister(self.close)
        for process in self.started:
            process.kill(signal.SIGKILL)
            process.process.wait()

    def _name(self, base: str) -> str:
        return f"{len(self.started) + 1:02d}-{base}"
