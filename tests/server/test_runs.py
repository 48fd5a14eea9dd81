"""The run service: durability modes, recorded history, events live and replayed."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from flowc.compiler import compile_source
from flowc.runtime import Registry
from flowc.server import runs, store
from flowc.server.db import Database
from flowc.server.models import WorkflowDefinition
from flowc.server.runs import RunService, UnknownRun
from tests.server.conftest import define, service_on, until
from tests.server.databases import database_url

__all__ = ["database_url"]

ROOT = Path(__file__).parents[2]
LOOP = "set max_steps = 40\ncount -> check ? n < 5 -> count : end\n"


def make_registry() -> Registry:
    registry = Registry()

    def count(state: dict[str, Any]) -> dict[str, Any]:
        return {"n": state.get("n", 0) + 1, "log": [*state.get("log", []), state.get("n", 0)]}

    def check(state: dict[str, Any]) -> None:
        return None

    async def explode(state: dict[str, Any]) -> None:
        raise RuntimeError("broken tool")

    for function in (count, check, explode):
        registry.add(function)
    return registry


async def _define(db: Database, source: str, registry: Registry) -> WorkflowDefinition:
    ir = compile_source(source, tools=registry.specs()).ir
    async with db.session() as session:
        return await store.create_definition(session, name="t", source=source, ir=ir)


async def _run_and_read(
    url: str, source: str, durability: Any, state: dict[str, Any]
) -> tuple[Any, Any, list[Any], list[dict[str, Any]], list[dict[str, Any]]]:
    db = Database(url)
    await db.create_tables()
    registry = make_registry()
    service = RunService(db, registry=registry)
    await service.open()
    try:
        definition = await _define(db, source, registry)
        run_id = (
            await service.start(definition=definition, input=state, durability=durability)
        ).run_id
        live = asyncio.ensure_future(_collect(service, run_id))
        result = await service.result(run_id)
        live_events = await live
        async with db.session() as session:
            run = await store.get_run(session, run_id=run_id)
            steps = await store.list_steps(session, run_id=run_id)
        late = await _collect(service, run_id)
        service._live.clear()  # forget it here: the next subscriber replays from the database
        replayed = await _collect(service, run_id)
        return result, run, steps, live_events, [*late, *replayed]
    finally:
        await service.close()
        await db.dispose()


async def _collect(service: RunService, run_id: uuid.UUID) -> list[dict[str, Any]]:
    return [message async for message in service.events(run_id)]


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
def test_durability_modes_record_the_exact_history(database_url: str, durability: str) -> None:
    result, run, steps, live, _ = asyncio.run(
        _run_and_read(database_url, LOOP, durability, {"seed": True})
    )
    assert result.status == "succeeded"
    assert run.status == "succeeded" and run.durability == durability
    assert [(s.seq, s.node) for s in steps] == [(s.seq, s.node) for s in result.steps]
    assert len(steps) == 10
    replay: dict[str, Any] = dict(run.input)
    for step in steps:
        replay = {**replay, **step.delta}
    assert replay == run.state == result.state
    assert run.state["log"] == [0, 1, 2, 3, 4]
    assert (run.current_node, run.step) == ("check", 10)
    assert run.started_at is not None
    assert run.finished_at is not None
    assert [m["type"] for m in live][:3] == ["run_started", "node_started", "node_finished"]
    assert live[-1]["type"] == "run_finished" and live[-1]["state"] == run.state


def test_late_and_replayed_events(database_url: str) -> None:
    _, run, steps, live, later = asyncio.run(_run_and_read(database_url, LOOP, "sync", {}))
    late, replayed = later[: len(live)], later[len(live) :]
    assert late == live  # a client that joins after the end gets everything, in order
    assert [m["type"] for m in replayed] == ["run_started"] + ["node_finished"] * 10 + [
        "run_finished"
    ]
    finished = [m for m in live if m["type"] == "node_finished"]
    assert [(m["step"], m["node"], m["delta"]) for m in replayed[1:-1]] == [
        (m["step"], m["node"], m["delta"]) for m in finished
    ]
    assert replayed[-1]["state"] == run.state
    assert len(steps) == 10


def test_a_failed_run_is_recorded_with_its_error(database_url: str) -> None:
    result, run, steps, live, later = asyncio.run(
        _run_and_read(database_url, "count -> explode -> end", "sync", {})
    )
    assert result.status == "failed" and run.status == "failed"
    assert run.error == {
        "code": "tool_error",
        "message": "tool `explode` failed: RuntimeError: broken tool",
        "node": "explode",
        "span": {"line": 1, "column": 10, "end_line": 1, "end_column": 17},
    }
    assert run.state == {"n": 1, "log": [0]}
    assert [s.node for s in steps] == ["count"]
    assert live[-1]["type"] == "run_failed" and live[-1]["error"]["code"] == "tool_error"
    # Replayed from the database, the final event says what it said live.
    replayed_final = later[-1]
    assert replayed_final == {**live[-1], "at": replayed_final["at"]}
    assert (replayed_final["step"], replayed_final["node"]) == (1, "explode")


def test_in_progress_state_is_visible_between_steps(database_url: str) -> None:
    async def scenario() -> list[tuple[str, int, str | None]]:
        db = Database(database_url)
        await db.create_tables()
        registry = make_registry()
        gate = asyncio.Event()
        seen: list[tuple[str, int, str | None]] = []

        async def wait_here(state: dict[str, Any]) -> dict[str, Any]:
            # The row holds a snapshot; the service adds the steps recorded after it.
            run = await service.state(run_ids[0])
            assert run is not None
            seen.append((run["status"], run["step"], run["current_node"]))
            await gate.wait()
            return {"waited": True}

        registry.add(wait_here)
        service = RunService(db, registry=registry)
        await service.open()
        run_ids: list[uuid.UUID] = []
        try:
            definition = await _define(
                db, "node c1 = count\nnode c2 = count\nc1 -> c2 -> wait_here -> end", registry
            )
            run_ids.append((await service.start(definition=definition, input={})).run_id)
            await asyncio.sleep(0.2)
            gate.set()
            result = await service.result(run_ids[0])
            assert result.status == "succeeded"
            return seen
        finally:
            await service.close()
            await db.dispose()

    assert asyncio.run(scenario()) == [("running", 2, "c2")]


def test_unknown_runs(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        await db.create_tables()
        service = RunService(db, registry=make_registry())
        await service.open()
        try:
            with pytest.raises(UnknownRun):
                await service.result(uuid.uuid4())
            with pytest.raises(UnknownRun):
                await _collect(service, uuid.uuid4())
        finally:
            await service.close()
            await db.dispose()

    asyncio.run(scenario())


def test_code_review_example_runs_through_the_service(database_url: str) -> None:
    source = (ROOT / "examples/code_review.flow").read_text()
    code = (ROOT / "examples/samples/prints.py").read_text()

    async def scenario() -> tuple[Any, Any]:
        from flowc.runtime import REGISTRY
        from flowc.runtime.tools import load_builtin_packs

        load_builtin_packs()
        db = Database(database_url)
        await db.create_tables()
        service = RunService(db, registry=REGISTRY)
        await service.open()
        try:
            definition = await _define(db, source, REGISTRY)
            run_id = (await service.start(definition=definition, input={"code": code})).run_id
            result = await service.result(run_id)
            async with db.session() as session:
                return result, await store.get_run(session, run_id=run_id)
        finally:
            await service.close()
            await db.dispose()

    result, run = asyncio.run(scenario())
    assert result.status == "succeeded"
    assert run.state == result.state
    assert run.state["score"] >= 80


ONE_STEP = "set max_steps = 1\ncheck -> end\n"


async def _claims_counted(service: RunService) -> list[int]:
    """Count the service's claims from now on: the list holds each claim's room."""
    counted: list[int] = []
    claim = service.log.claim

    async def counting(limit: int, *, everything: bool = False) -> Any:
        counted.append(limit)
        return await claim(limit, everything=everything)

    service.log.claim = counting  # type: ignore[method-assign]
    return counted


def test_a_run_that_ends_on_an_idle_worker_claims_nothing(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing waits: the run's end need not look for more (NOTIFY and the poll would; the
    # poll comes a minute apart here).
    monkeypatch.setattr(runs, "CLAIM_POLL_MAX", 60.0)

    async def scenario() -> list[int]:
        registry = make_registry()
        async with service_on(database_url, registry, lease_seconds=300) as service:
            definition = await define(service.db, ONE_STEP, registry)
            await asyncio.sleep(0.1)  # the claim loop's first turn, at start
            counted = await _claims_counted(service)
            for _ in range(3):
                run_id = (await service.start(definition=definition, input={})).run_id
                assert (await service.result(run_id)).status == "succeeded"
            await asyncio.sleep(0.2)
            return counted

    assert asyncio.run(scenario()) == []


def test_a_run_that_ends_makes_room_for_a_queued_one_at_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One run at a time: the second waits in the queue, and the first one's end claims it
    # (the poll, a minute here, would be too late for the test's bound).
    monkeypatch.setattr(runs, "CLAIM_POLL_MAX", 60.0)

    async def scenario() -> list[str]:
        registry = make_registry()
        async with service_on(
            database_url, registry, worker_concurrency=1, lease_seconds=300
        ) as service:
            definition = await define(service.db, LOOP, registry)
            started = [
                (await service.start(definition=definition, input={})).run_id for _ in range(3)
            ]
            results = await asyncio.wait_for(
                asyncio.gather(*(service.result(run_id) for run_id in started)), 10
            )
            return [result.status for result in results]

    assert asyncio.run(scenario()) == ["succeeded"] * 3


def test_a_finished_run_kept_for_followers_lets_its_result_go(database_url: str) -> None:
    # Its events stay a while for late followers; its result (every step) is the database's
    # to give: a late `result()` answers the same.
    async def scenario() -> None:
        registry = make_registry()
        async with service_on(database_url, registry) as service:
            definition = await define(service.db, LOOP, registry)
            run_id = (await service.start(definition=definition, input={})).run_id
            first = await service.result(run_id)
            await asyncio.sleep(0)  # the task's done callbacks
            live = service.live_run(run_id)
            assert live is not None and live.task is None
            assert [m["type"] for m in await _collect(service, run_id)][-1] == "run_finished"
            again = await service.result(run_id)
            assert (again.status, again.state) == (first.status, first.state) == (
                "succeeded", {"n": 5, "log": [0, 1, 2, 3, 4]},
            )  # fmt: skip
            assert [(s.seq, s.node, s.delta) for s in again.steps] == [
                (s.seq, s.node, s.delta) for s in first.steps
            ]

    asyncio.run(scenario())


def test_a_run_task_that_fails_is_logged_when_it_ends(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A fault in the run's task is logged when the task ends, though no one waits on it.
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a fault in execute")

    monkeypatch.setattr(runs, "execute", broken)

    async def scenario() -> None:
        registry = make_registry()
        async with service_on(database_url, registry) as service:
            definition = await define(service.db, LOOP, registry)
            await service.start(definition=definition, input={})
            await until(lambda: bool(failed()), "the fault to be logged")

    def failed() -> list[Any]:
        return [r for r in caplog.records if "its task failed" in r.getMessage()]

    asyncio.run(scenario())
    records = failed()
    assert len(records) == 1 and records[0].levelname == "ERROR"
    assert isinstance(records[0].exc_info[1], RuntimeError)
