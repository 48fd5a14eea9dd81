"""A temporary folder -> a private PostgreSQL server that tests may stop, crash and restart.

`Cluster()` runs `initdb` in a new folder and starts `postgres` on a free port of 127.0.0.1,
trust authentication, superuser `postgres`.  `stop("immediate")` is a crash: no shutdown
checkpoint, so the next `start()` replays the WAL.  `restart()` comes back on the same port;
`destroy()` stops the server and removes the folder (also at exit, should a test run be
interrupted before its teardown).

`fsync` is off: only PostgreSQL crashes here, never the machine, and the operating system
keeps what was written.  `synchronous_commit` keeps its default, so a commit still waits for
its WAL write, and what a commit acknowledged survives `stop("immediate")`.

PostgreSQL refuses to run as root: when this process is root, its commands run as the
`postgres` user, in a folder that user owns.
"""

from __future__ import annotations

import asyncio
import atexit
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

import asyncpg

from tests.packaging.conftest import free_port

T = TypeVar("T")
StopMode = Literal["smart", "fast", "immediate"]

#: The server programs a cluster needs, found together in one folder.
PROGRAMS = ("initdb", "pg_ctl", "postgres")
#: Where distributions put those programs when they are not on PATH (newest version first).
PROGRAM_FOLDERS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin")
#: The superuser `initdb` creates, and the system user PostgreSQL runs as when we are root.
SUPERUSER = "postgres"
#: Seconds `pg_ctl` may take to start or stop the server: a bound for a broken server.
PG_CTL_TIMEOUT = 60
#: Seconds a connection attempt may take.
CONNECT_TIMEOUT = 10.0
#: Free ports tried when another process takes the chosen one before the server binds it.
PORT_ATTEMPTS = 3
#: What a database name may be: created without quoting surprises.
DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class ClusterUnavailable(RuntimeError):
    """PostgreSQL's server programs, or the user to run them as, are not on this machine."""


class ClusterError(RuntimeError):
    """A PostgreSQL command that failed; the message has its output and the server log's end."""


def find_programs() -> Path:
    """The folder holding `initdb`, `pg_ctl` and `postgres`; `ClusterUnavailable` if none does."""
    on_path = shutil.which("pg_ctl")
    folders = [str(Path(on_path).resolve().parent)] if on_path else []
    for pattern in PROGRAM_FOLDERS:
        folders += sorted(glob.glob(pattern), key=_version_key, reverse=True)
    for folder in folders:
        if all(os.access(Path(folder, name), os.X_OK) for name in PROGRAMS):
            return Path(folder)
    raise ClusterUnavailable(
        f"PostgreSQL's server programs ({', '.join(PROGRAMS)}) are neither on PATH nor in "
        f"{', '.join(PROGRAM_FOLDERS)}: install PostgreSQL's server package"
    )


def _version_key(folder: str) -> list[int]:
    return [int(part) for part in re.findall(r"\d+", folder)]


def _run_as() -> pwd.struct_passwd | None:
    """The `postgres` user when this process is root (PostgreSQL refuses root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise ClusterUnavailable(
            f"PostgreSQL refuses to run as root and there is no `{SUPERUSER}` user to run it as"
        ) from None


def _in_own_loop(work: Callable[[], Awaitable[T]]) -> T:
    """Run async `work` to its end on a new event loop in another thread.

    The cluster's methods are plain functions that async tests call too: their loop is busy.
    """

    async def main() -> T:
        return await work()

    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, main()).result()


class Cluster:
    """A PostgreSQL server of its own in a temporary folder: started, stopped, crashed, removed.

    Use it as a context manager, or call `destroy()`; `start`, `stop` and `restart` block
    until the server is up or down (from an async test: `await asyncio.to_thread(...)` when
    the loop has work of its own to do meanwhile).
    """

    def __init__(self) -> None:
        self.programs = find_programs()
        self._owner = _run_as()
        self.directory = Path(tempfile.mkdtemp(prefix="flowc-pg-"))
        self.data = self.directory / "data"
        self.log_path = self.directory / "postgres.log"
        self.port = 0
        self._destroyed = False
        atexit.register(self.destroy)
        try:
            if self._owner is not None:
                os.chown(self.directory, self._owner.pw_uid, self._owner.pw_gid)
            self._initdb()
            self._start_on_a_free_port()
        except BaseException:
            self.destroy()
            raise

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"Cluster(port={self.port}, directory={str(self.directory)!r})"

    @property
    def url(self) -> str:
        """The URL of the `postgres` database, as the superuser."""
        return self.database_url(SUPERUSER)

    def database_url(self, name: str) -> str:
        """The URL of the database `name` on this server."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    @property
    def running(self) -> bool:
        """Whether the server is up (`pg_ctl status`)."""
        if self._destroyed:
            return False
        status = self._run(self._pg_ctl("status"), check=False)
        return status.returncode == 0

    def start(self) -> None:
        """Start the server on its port and wait until it takes connections; no-op if up."""
        if self._destroyed:
            raise ClusterError(f"{self!r} is destroyed")
        if self.running:
            return
        start = self._pg_ctl("start", "-l", str(self.log_path), "-o", f"-p {self.port}")
        self._run(start)
        self._wait_until_ready()

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server and wait until it is down; no-op if it is not running.

        `fast` rolls back open transactions and writes a shutdown checkpoint; `immediate`
        quits at once, as a crash would: the next start recovers from the WAL.
        """
        if self.running:
            self._run(self._pg_ctl("stop", "-m", mode))

    def restart(self, mode: StopMode = "fast") -> None:
        """Stop the server (`mode` as in `stop`), then start it on the same port."""
        self.stop(mode)
        self.start()

    def create_database(self, name: str) -> str:
        """Create the database `name` (lower-case letters, digits, `_`); its URL."""
        if not DATABASE_NAME.fullmatch(name):
            raise ValueError(f"database names here are [a-z_][a-z0-9_]*, not {name!r}")
        self.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def execute(self, statement: str) -> str:
        """Run one SQL statement in the `postgres` database; its status (`CREATE DATABASE`)."""

        async def execute() -> str:
            connection = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT)
            try:
                status: str = await connection.execute(statement)
                return status
            finally:
                await connection.close()

        return _in_own_loop(execute)

    def log(self) -> str:
        """Everything the server logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def destroy(self) -> None:
        """Stop the server at once if it runs and remove its folder; again is a no-op."""
        atexit.unregister(self.destroy)
        if self._destroyed:
            return
        self._destroyed = True
        try:
            if (self.data / "postmaster.pid").exists():
                self._stop_at_once()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _initdb(self) -> None:
        initdb = [str(self.programs / "initdb"), "-D", str(self.data), "-U", SUPERUSER]
        self._run([*initdb, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"])
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.directory),
            "fsync": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# flowc's test cluster\n")
            conf.writelines(f"{key} = '{value}'\n" for key, value in settings.items())

    def _start_on_a_free_port(self) -> None:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = free_port()
            logged = len(self.log())
            try:
                self.start()
                return
            except ClusterError:
                taken = "Address already in use" in self.log()[logged:]
                if not taken or attempt == PORT_ATTEMPTS:
                    raise

    def _wait_until_ready(self) -> None:
        """Connect until a query answers: `pg_ctl -w` saw the server up, this proves it."""

        async def ready() -> None:
            deadline = time.monotonic() + PG_CTL_TIMEOUT
            while True:
                try:
                    connection = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT)
                    try:
                        await connection.fetchval("SELECT 1")
                        return
                    finally:
                        await connection.close()
                except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
                    if time.monotonic() > deadline:
                        raise ClusterError(
                            f"{self!r} does not take connections: {exc}\n{self._log_tail()}"
                        ) from None
                await asyncio.sleep(0.05)

        _in_own_loop(ready)

    def _stop_at_once(self) -> None:
        try:
            self._run(self._pg_ctl("stop", "-m", "immediate"))
        except (ClusterError, OSError, subprocess.SubprocessError):
            # pg_ctl failed: kill the postmaster's process group (it is a session leader).
            try:
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.killpg(pid, signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass

    def _pg_ctl(self, action: str, *options: str) -> list[str]:
        pg_ctl = [str(self.programs / "pg_ctl"), action, "-D", str(self.data)]
        if action == "status":
            return pg_ctl
        return [*pg_ctl, "-w", "-t", str(PG_CTL_TIMEOUT), *options]

    def _run(self, command: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program (as `postgres` when we are root); `ClusterError` on failure."""
        owner = self._owner
        result = subprocess.run(
            command,
            cwd=self.directory,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=PG_CTL_TIMEOUT + 30,
            check=False,
            stdin=subprocess.DEVNULL,
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
            extra_groups=[] if owner else None,
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"{' '.join(command)} exited {result.returncode}\n"
                f"{result.stdout}{result.stderr}{self._log_tail()}"
            )
        return result

    def _log_tail(self, lines: int = 20) -> str:
        tail = self.log().splitlines()[-lines:]
        return "server log, last lines:\n" + "\n".join(tail) if tail else "(no server log)"


def _environment() -> dict[str, str]:
    """This process's environment without `PG*` variables (they would pick another server),
    in the C locale (messages in English, whatever the machine says)."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    environment.update(LC_ALL="C", LANG="C")
    return environment
