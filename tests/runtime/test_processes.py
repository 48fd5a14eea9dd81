"""Process tools: run in worker processes, off the event loop, killed on a timeout or cancel."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from flowc.runtime import Registry, RunResult, ToolDefinitionError, WorkflowEngine, processes
from flowc.runtime.processes import PROCESSES
from tests.runtime.process_support import process_registry, where

#: A bound on waiting for what nothing signals (a process being reaped); not a timing.
WAIT = 30.0


def run(source: str, **kwargs: Any) -> RunResult:
    engine = WorkflowEngine(source, process_registry())
    return asyncio.run(engine.run(**kwargs))


def gone(pid: int) -> bool:
    """True once no process has this id (reaped, not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), WAIT)


def test_a_process_tool_runs_in_another_process_and_knows_its_step() -> None:
    result = run("where -> end", run_id="run-7")
    assert result.status == "succeeded", result.error
    assert result.state["pid"] != os.getpid()
    assert result.state["key"] == "run-7:1"


def test_what_a_process_tool_raises_fails_the_run_as_a_tool_error() -> None:
    result = run("fail -> end")
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        "tool_error",
        "tool `fail` failed: ValueError: no good",
    )


def test_a_worker_that_dies_fails_its_step_and_the_next_call_gets_a_new_one() -> None:
    result = run("die -> end")
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        "tool_error",
        "tool `die` failed: ProcessDied: the tool's worker process ended with 3 before answering",
    )
    assert run("where -> end").status == "succeeded"


def test_a_result_that_cannot_be_sent_back_is_a_tool_error() -> None:
    result = run("unsendable -> end")
    assert result.error is not None
    assert result.error.code == "tool_error"
    assert result.error.message.startswith(
        "tool `unsendable` failed: TypeError: its result cannot be sent back: "
    )


def test_a_timeout_kills_the_worker(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    source = f'node h = hang(marker = "{marker}") with timeout = 0.2\nh -> end'

    async def main() -> RunResult:
        result = await WorkflowEngine(source, process_registry()).run()
        pid = int(marker.read_text(encoding="utf-8"))
        await until(lambda: gone(pid))
        return result

    result = asyncio.run(main())
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        "timeout",
        "node `h` timed out: tool `hang` took longer than 0.2 seconds",
    )


def test_a_cancel_kills_the_worker(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    source = f'node h = hang(marker = "{marker}")\nh -> end'

    async def main() -> int:
        task = asyncio.ensure_future(WorkflowEngine(source, process_registry()).run())
        await until(marker.exists)
        await until(lambda: bool(marker.read_text(encoding="utf-8")))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        pid = int(marker.read_text(encoding="utf-8"))
        await until(lambda: gone(pid))
        return pid

    assert asyncio.run(main()) > 0


def test_the_event_loop_runs_while_a_process_tool_keeps_a_cpu_busy(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    source = f'node s = spin(flag = "{flag}")\ns -> end'

    async def main() -> tuple[RunResult, int]:
        task = asyncio.ensure_future(WorkflowEngine(source, process_registry()).run())
        await until(Path(f"{flag}.started").exists)
        turns = 0
        while turns < 100:  # the loop turns while the tool spins; held, it never would
            await asyncio.sleep(0)
            turns += 1
        flag.write_text("done", encoding="utf-8")
        return await task, turns

    result, turns = asyncio.run(main())
    assert (result.status, result.state, turns) == ("succeeded", {"spun": True}, 100)


def test_calls_beyond_the_workers_wait_for_one_and_workers_are_reused() -> None:
    engine = WorkflowEngine("where -> end", process_registry())

    async def main() -> list[RunResult]:
        return await asyncio.gather(*(engine.run() for _ in range(3 * PROCESSES)))

    results = asyncio.run(main())
    assert all(result.status == "succeeded" for result in results)
    assert len({result.state["pid"] for result in results}) <= PROCESSES


def test_only_top_level_sync_functions_can_be_process_tools() -> None:
    def nested(state: dict[str, Any]) -> dict[str, Any]:
        return state

    async def awaited(state: dict[str, Any]) -> dict[str, Any]:
        return state

    with pytest.raises(ToolDefinitionError) as nested_error:
        Registry().add(nested, process=True)
    assert str(nested_error.value) == (
        "tool `nested`: `process=True` needs a function a worker process can import: one "
        "defined at the top level of a module other than `__main__`"
    )
    for function, blocking in ((awaited, False), (where, True)):
        with pytest.raises(ToolDefinitionError) as error:
            Registry().add(function, process=True, blocking=blocking)
        assert str(error.value) == (
            f"tool `{function.__name__}`: `process=True` is for sync functions, without "
            "`blocking=True`"
        )
    assert Registry().add(where, process=True).mode == "process"


def test_a_worker_is_kept_for_the_next_call_unless_it_grew_large(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept = [run("where -> end").state["pid"] for _ in range(2)]
    monkeypatch.setattr(processes, "RETIRE_PEAK_KIB", 0)  # every worker has grown "large"
    retired = [run("where -> end").state["pid"] for _ in range(2)]
    assert kept[0] == kept[1]
    assert retired[0] != retired[1] and kept[1] not in retired[1:]


#: A parent that holds 300 MiB, then starts a process that says how large it has been.
_BIG_PARENT = """
import subprocess, sys
held = bytearray(300 * 1024 * 1024)
for i in range(0, len(held), 4096):
    held[i] = 1
child = "from flowc.runtime.processes import _peak_kib; print(_peak_kib())"
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                     check=True).stdout.strip())
"""


def test_a_worker_of_a_large_parent_does_not_count_the_parents_memory() -> None:
    # `ru_maxrss` keeps the parent's size across `exec`: a worker of a server that once
    # held 300 MiB measured itself past `RETIRE_PEAK_KIB` and was retired after each call.
    ran = subprocess.run(
        [sys.executable, "-c", _BIG_PARENT], capture_output=True, text=True, check=True
    )
    assert int(ran.stdout) < processes.RETIRE_PEAK_KIB // 2


def test_a_freed_worker_goes_to_the_call_that_waited_longest() -> None:
    # Workers are stand-ins: the pool hands out what it holds idle.  One slot, taken here;
    # `a` and then `b` wait for it.  When it is given back, a call made at that moment (`c`)
    # queues behind them instead of taking it first: the order is the order of asking.
    pool = processes._Pool(1)
    pool.idle.append(SimpleNamespace(peak=0))  # type: ignore[arg-type]
    held = pool.take()
    order: list[str] = []

    def call(name: str) -> None:
        worker = pool.take()
        order.append(name)
        pool.give_back(worker, healthy=True)

    def waiting(count: int) -> None:
        deadline = time.monotonic() + 10
        while len(pool.waiting) < count and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(pool.waiting) == count

    threads = [threading.Thread(target=call, args=(name,), daemon=True) for name in "abc"]
    threads[0].start()
    waiting(1)
    threads[1].start()
    waiting(2)
    pool.give_back(held, healthy=True)
    threads[2].start()
    for thread in threads:
        thread.join(10)
    assert order == ["a", "b", "c"]
    assert (pool.free, len(pool.idle), len(pool.waiting)) == (1, 1, 0)


#: A tool file of process tools named `tools.py`, as two packs may both name theirs.
_PACK = '''\
from flowc.runtime import register_tool


@register_tool(process=True)
def {name}(state):
    """{name}, in a worker process."""
    return {{"{name}": __file__}}
'''


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_two_tool_files_of_one_name_each_run_their_own_process_tools(
    tmp_path: Path, order: tuple[str, str]
) -> None:
    # Each file puts its folder first on the path, so `import tools` finds the one loaded
    # last; the parent named the other one apart.  A worker must run each tool from the
    # file the parent loaded it from, and register nothing twice.
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "tools.py").write_text(_PACK.format(name=name))
    (tmp_path / "two.flow").write_text("a -> b -> a2\nnode a2 = a\na2 -> end\n")
    tools = [argument for pack in order for argument in ("--tools", f"{pack}/tools.py")]
    ran = subprocess.run(
        [sys.executable, "-m", "flowc.cli.main", "run", "two.flow", *tools, "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    result = json.loads(ran.stdout)
    assert result["status"] == "succeeded", ran.stdout + ran.stderr
    assert result["state"] == {
        "a": str(tmp_path / "a" / "tools.py"),
        "b": str(tmp_path / "b" / "tools.py"),
    }
