"""A process tool's call -> its result, computed in a worker process, off the event loop.

A thread does not keep a CPU-bound tool off the event loop: `ast.parse` of a large file
runs in C and holds the GIL from start to end (1.7 MB: about 3 s in which the loop runs
nothing).  A tool registered with `process=True` runs in one of at most `PROCESSES` worker
processes instead: fresh interpreters (`python -c`, the parent's `sys.path`) that import the
tool's module by name, started when first needed and kept.  A call waits for a free worker
in a thread of its own, never on the loop.  Python can stop a process, unlike a thread: a
call that times out or is cancelled kills its worker, and the next call starts a new one.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import importlib.util
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from flowc.runtime.calls import hand_over, outcome_of
from flowc.runtime.context import STEP, StepContext
from flowc.runtime.registry import Reference, reference
from flowc.runtime.tools.loading import own_name, run_file

#: Worker processes for process tools, per flowc process (calls beyond wait for one).
PROCESSES = max(1, min(4, os.cpu_count() or 1))
#: A worker whose memory ever grew past this (in KiB, at its peak) is retired after its
#: call: Python keeps what it once took, and an idle worker should not hold it.
RETIRE_PEAK_KIB = 256 * 1024

#: What a worker process runs: `serve` on the socket whose descriptor is its argument.
_BOOT = "import sys; from flowc.runtime.processes import serve; serve(int(sys.argv[1]))"


class ProcessDied(RuntimeError):
    """A worker process ended (or could not start) before it answered a call."""


class _Worker:
    """One worker process and the socket it is spoken to on."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.connection = Connection(ours.detach())
        self.connection.send(list(sys.path))
        self.peak = 0  # KiB: the most memory the process has held, as it last said

    def call(self, where: Reference, state: Any, args: dict[str, Any], step: StepContext) -> Any:
        """Send one call and wait for its outcome, `(returned, value)`; `EOFError` if it died."""
        self.connection.send((where, state, args, step))
        data = self.connection.recv_bytes()
        try:
            returned, value, self.peak = pickle.loads(data)
        except Exception as exc:  # an exception type that cannot be rebuilt here
            return False, RuntimeError(f"the worker's answer could not be read: {exc}")
        return returned, value

    def kill(self) -> None:
        """Stop the process at once (it may be mid-call) and close the socket."""
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()
        self.connection.close()

    def exit_code(self) -> int | None:
        """The process's exit code once it has ended (negative: the signal), else None."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.process.wait(timeout=1)
        return None


class _Pool:
    """At most `size` workers at once; idle ones are kept for the next call.

    Calls get a worker in the order they asked: a freed one goes to the longest waiter.  A
    semaphore would let a newly arrived call take it before the waiter its release woke,
    and under load some calls waited many times the others' time (32 code reviews at once:
    a p99 of 1.2 s against a p50 of 0.15 s).
    """

    def __init__(self, size: int) -> None:
        self.lock = threading.Lock()
        self.idle: list[_Worker] = []
        self.free = size
        self.waiting: deque[threading.Event] = deque()

    def take(self) -> _Worker:
        """A worker for one call (blocks the calling thread until one is free)."""
        with self.lock:
            turn = None
            if self.free and not self.waiting:
                self.free -= 1
            else:
                turn = threading.Event()
                self.waiting.append(turn)
        if turn is not None:
            turn.wait()  # `_release` handed this call its slot
        with self.lock:
            if self.idle:
                return self.idle.pop()
        try:
            return _Worker()
        except BaseException:
            self._release()
            raise

    def give_back(self, worker: _Worker, healthy: bool) -> None:
        """Keep a worker that answered; kill one that did not, was abandoned or grew large."""
        if healthy and worker.peak <= RETIRE_PEAK_KIB:
            with self.lock:
                self.idle.append(worker)
        else:
            worker.kill()
        self._release()

    def _release(self) -> None:
        """A slot is free: it passes to the longest waiter, if any."""
        with self.lock:
            if self.waiting:
                self.waiting.popleft().set()
            else:
                self.free += 1

    def close(self) -> None:
        """Stop the idle workers (at exit)."""
        with self.lock:
            idle, self.idle = self.idle, []
        for worker in idle:
            worker.connection.close()  # it reads the end and exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=1)


_POOL = _Pool(PROCESSES)
atexit.register(_POOL.close)


class _ProcessCall:
    """One call: the worker it runs in, and whether its caller gave up on it."""

    __slots__ = ("abandoned", "lock", "worker")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.worker: _Worker | None = None
        self.abandoned = False

    def abandon(self) -> None:
        """Give up on the call: its worker, if it has one, is killed."""
        with self.lock:
            self.abandoned = True
            worker, self.worker = self.worker, None
        if worker is not None:
            with contextlib.suppress(OSError):
                worker.process.kill()


async def call_in_process(
    function: Callable[..., Any],
    state: dict[str, Any],
    args: dict[str, Any],
    step: StepContext,
    timeout: float | None,
) -> Any:
    """`function(state, **args)` in a worker process: its result, or what it raised.

    `CallTimeout` when `timeout` seconds pass first (waiting for a free worker included);
    on a timeout or a cancel the worker is killed.
    """
    where = reference(function)
    if where is None:
        raise ProcessDied(f"{function!r} cannot be found by a worker process")
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[bool, Any]] = loop.create_future()
    call = _ProcessCall()
    thread = threading.Thread(
        target=_work,
        args=(call, where, state, args, step, loop, done),
        name=f"flowc-process-{step.node}",
        daemon=True,
    )
    thread.start()
    return await outcome_of(done, timeout, call.abandon)  # abandoned: the worker is killed


def _work(
    call: _ProcessCall,
    where: Reference,
    state: dict[str, Any],
    args: dict[str, Any],
    step: StepContext,
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[tuple[bool, Any]],
) -> None:
    """The thread's part: take a worker, make the call through it, hand the outcome over."""
    try:
        worker = _POOL.take()
    except Exception as exc:
        hand_over(loop, done, (False, ProcessDied(f"no worker process could start: {exc}")))
        return
    with call.lock:
        if call.abandoned:
            _POOL.give_back(worker, healthy=True)
            return
        call.worker = worker
    healthy = True
    try:
        outcome = worker.call(where, state, args, step)
    except (EOFError, OSError):
        healthy = False
        code = worker.exit_code()
        ended = f"by signal {-code}" if code is not None and code < 0 else f"with {code}"
        outcome = False, ProcessDied(f"the tool's worker process ended {ended} before answering")
    except Exception as exc:  # the state or an argument could not be sent
        healthy = False  # a message may be half written: the worker is not trusted again
        outcome = False, exc
    with call.lock:
        call.worker = None
        abandoned = call.abandoned
    _POOL.give_back(worker, healthy and not abandoned)
    if not abandoned:
        hand_over(loop, done, outcome)


# -- the worker process's side ---------------------------------------------------------------


def serve(descriptor: int) -> None:
    """A worker process's loop: read a call, run it, send back its outcome, until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    connection = Connection(descriptor)
    sys.path[:] = connection.recv()
    functions: dict[Reference, Callable[..., Any]] = {}
    while True:
        try:
            where, state, args, step = connection.recv()
        except EOFError:
            return
        outcome: tuple[bool, Any]
        try:
            function = functions.get(where) or functions.setdefault(where, _resolve(where))
            token = STEP.set(step)
            try:
                outcome = True, function(state, **args)
            finally:
                STEP.reset(token)
        except Exception as exc:  # handed to the run, which decides what it means
            outcome = False, exc
        peak = _peak_kib()
        try:
            data = pickle.dumps((*outcome, peak))
        except Exception as exc:
            what = "its result" if outcome[0] else f"its {type(outcome[1]).__name__}"
            data = pickle.dumps((False, TypeError(f"{what} cannot be sent back: {exc}"), peak))
        try:
            connection.send_bytes(data)
        except OSError:
            return


def _peak_kib() -> int:
    """The most memory this process has held, in KiB (0 where the system does not say).

    Linux's `VmHWM` first: `ru_maxrss` also counts what the parent held when it started
    this process (the kernel keeps the larger of the two across `exec`), so a worker of a
    server that once held 300 MiB would look 300 MiB large and be retired after every call.
    """
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux and BSD


def _module(name: str, file: str | None) -> Any:
    """The parent's module `name`, loaded from `file` (its `__file__` there).

    By its name when that name finds `file` here too; from the file under that name when
    nothing here has the name (a tool file the parent loaded under a name of its own);
    and under a name of its own (`own_name`) when the name finds another file.  Two tool
    files of one name (`a/tools.py`, `b/tools.py`) each put their folder first on the
    path: the name finds the same one in the parent and in a worker only by chance, and
    running the other file under it would register its tools a second time.
    """
    found = sys.modules.get(name)
    if file is None or (found is not None and _same_file(getattr(found, "__file__", None), file)):
        return found if found is not None else importlib.import_module(name)
    if found is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and _same_file(spec.origin, file):
            return importlib.import_module(name)
        if spec is None:
            return _load(name, file)
    own = own_name(Path(file).resolve())
    return sys.modules.get(own) or _load(own, file)


def _load(name: str, file: str) -> Any:
    """The module in `file`, run under `name`; `ImportError` if it is not Python."""
    module = run_file(name, Path(file))
    if module is None:
        raise ImportError(f"{file} is not a Python module", name=name)
    return module


def _same_file(found: str | None, file: str) -> bool:
    return found is not None and os.path.realpath(found) == os.path.realpath(file)


def _resolve(where: Reference) -> Callable[..., Any]:
    """A function by module and qualified name, from the file the parent loaded it from."""
    module_name, qualname, file = where
    module = _module(module_name, file)
    value: Any = module
    for part in qualname.split("."):
        value = getattr(value, part)
    if not callable(value):
        raise TypeError(f"{module_name}.{qualname} is not a function")
    return value  # type: ignore[no-any-return]
