"""One tool call -> its result: awaited with a timeout, or in a daemon thread of its own.

A blocking call never uses the event loop's default executor, whose few threads one run's
slow tools could fill for every other run: each call gets a daemon thread, and a run may
have at most `limit` of them alive at once.  A call that times out, or whose run is
cancelled, is abandoned: Python cannot stop a thread, so it runs on and its result is
discarded, and it counts against its run's limit (and as `abandoned` in `tool_threads()`)
until it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from flowc.runtime.context import STEP, StepContext


class CallFailed(Exception):
    """A call that failed for a reason of its own, not the tool's: `code` says which."""

    code = "call_failed"

    def describe(self, node: str, tool: str) -> str:
        """The run error's message, for the call of `tool` by `node`."""
        return f"node `{node}` could not call tool `{tool}`: {self}"


class CallTimeout(CallFailed):
    """The call took longer than its timeout, `seconds`."""

    code = "timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds

    def describe(self, node: str, tool: str) -> str:
        """The run error's message, naming the node and the limit."""
        seconds = repr(float(self.seconds)).removesuffix(".0")  # as the flow writes it
        return f"node `{node}` timed out: tool `{tool}` took longer than {seconds} seconds"


class ThreadLimitError(CallFailed):
    """The run already has as many tool threads alive as it may have."""

    code = "thread_limit"


class _Counts:
    """Live tool threads in this process, whose result is awaited or abandoned."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.abandoned = 0


_COUNTS = _Counts()


def tool_threads() -> dict[str, int]:
    """Live tool threads in this process: `running` (awaited) and `abandoned` (discarded)."""
    with _COUNTS.lock:
        return {"running": _COUNTS.running, "abandoned": _COUNTS.abandoned}


async def call_async(
    function: Callable[..., Coroutine[Any, Any, Any]],
    state: dict[str, Any],
    args: dict[str, Any],
    step: StepContext,
    timeout: float | None,
) -> Any:
    """Await `function(state, **args)`; cancel it and raise `CallTimeout` after `timeout` s."""
    token = STEP.set(step)
    try:
        if timeout is None:
            return await function(state, **args)
        try:
            return await asyncio.wait_for(_apart(function(state, **args)), timeout)
        except asyncio.TimeoutError:
            raise CallTimeout(timeout) from None
        except _Raised as raised:
            raise raised.error from None
    finally:
        STEP.reset(token)


class _Raised(Exception):
    """A `TimeoutError` the tool raised itself, kept apart from the one of its timeout."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


async def _apart(awaitable: Coroutine[Any, Any, Any]) -> Any:
    try:
        return await awaitable
    except (TimeoutError, asyncio.TimeoutError) as error:
        raise _Raised(error) from None


class _Call:
    """One thread's call: whether it returned, and whether its caller gave up on it."""

    __slots__ = ("abandoned", "finished")

    def __init__(self) -> None:
        self.abandoned = False
        self.finished = False


class RunThreads:
    """One run's tool threads: at most `limit` alive at once, abandoned ones included."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.alive = 0
        self.abandoned = 0

    async def call(
        self,
        function: Callable[..., Any],
        state: dict[str, Any],
        args: dict[str, Any],
        step: StepContext,
        timeout: float | None,
    ) -> Any:
        """`function(state, **args)` in a new daemon thread: its result, or what it raised.

        `ThreadLimitError` when the run has `limit` threads alive; `CallTimeout` when
        `timeout` seconds pass first.  On a timeout or a cancel the thread is abandoned.
        """
        with _COUNTS.lock:
            if self.alive >= self.limit:
                raise ThreadLimitError(self._limit_reached())
            self.alive += 1
            _COUNTS.running += 1
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[bool, Any]] = loop.create_future()
        call = _Call()
        context = contextvars.copy_context()  # the tool sees the caller's context variables
        context.run(STEP.set, step)
        thread = threading.Thread(
            target=self._work,
            args=(call, context, function, state, args, loop, done),
            name=f"flowc-tool-{step.node}",
            daemon=True,
        )
        try:
            thread.start()
        except RuntimeError as exc:  # the system has no thread to give
            self._finished(call)
            raise ThreadLimitError(f"no thread could be started: {exc}") from None
        return await outcome_of(done, timeout, lambda: self._abandon(call))

    def _limit_reached(self) -> str:
        text = f"the run already has {self.alive} tool threads alive (max_threads_per_run = "
        text += f"{self.limit})"
        if self.abandoned:
            text += f"; {self.abandoned} of them timed out or were cancelled and have not returned"
        return text

    def _work(
        self,
        call: _Call,
        context: contextvars.Context,
        function: Callable[..., Any],
        state: dict[str, Any],
        args: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[tuple[bool, Any]],
    ) -> None:
        try:
            outcome: tuple[bool, Any] = (True, context.run(function, state, **args))
        except BaseException as exc:  # handed to the run, which decides what it means
            outcome = (False, exc)
        if self._finished(call):
            hand_over(loop, done, outcome)

    def _finished(self, call: _Call) -> bool:
        """Count the call's thread as gone; True when its caller still wants the result."""
        with _COUNTS.lock:
            self.alive -= 1
            call.finished = True
            if call.abandoned:
                self.abandoned -= 1
                _COUNTS.abandoned -= 1
                return False
            _COUNTS.running -= 1
            return True

    def _abandon(self, call: _Call) -> None:
        with _COUNTS.lock:
            if not call.finished and not call.abandoned:
                call.abandoned = True
                self.abandoned += 1
                _COUNTS.running -= 1
                _COUNTS.abandoned += 1


async def outcome_of(
    done: asyncio.Future[tuple[bool, Any]], timeout: float | None, abandon: Callable[[], None]
) -> Any:
    """What a call made elsewhere returned (or raised), once `hand_over` delivers it.

    `CallTimeout` when `timeout` seconds pass first; on a timeout or a cancel, `abandon()`
    first: the call's answer will go nowhere.
    """
    try:
        returned, value = await (done if timeout is None else asyncio.wait_for(done, timeout))
    except asyncio.TimeoutError:
        abandon()
        raise CallTimeout(timeout or 0) from None
    except BaseException:  # cancelled
        abandon()
        raise
    if returned:
        return value
    raise value


def hand_over(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[tuple[bool, Any]],
    outcome: tuple[bool, Any],
) -> None:
    """From another thread: give `outcome` (returned?, value) to the loop's waiting `done`."""
    with contextlib.suppress(RuntimeError):  # the loop has closed
        loop.call_soon_threadsafe(_deliver, done, outcome)


def _deliver(done: asyncio.Future[tuple[bool, Any]], outcome: tuple[bool, Any]) -> None:
    if not done.done():
        done.set_result(outcome)
