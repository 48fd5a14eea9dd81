"""Attack a real `flowc serve` with every hostile input of issue 9; print what it did.

A `flowc serve` subprocess (bench/tools.py's `tick`, API tokens on) on a fresh SQLite file,
or with `--pg` a fresh PostgreSQL database.  Each attack is sent while `/healthz` is probed
one request at a time; for each the table shows the answers, the largest response, the
worst `/healthz` wait during it, and the server's peak resident memory so far (VmHWM).
The last lines count 5xx answers (the target is none) and the worst stall.  RELIABILITY.md
carries its latest output.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from loop_latency import database, python_file
from serving import served

TOKEN = "adversarial-bench-token"
MIB = 1024 * 1024
#: API tokens on; the rate limit raised: the attacks, not the rate limit (it has its own).
SERVER_ENV = {"FLOWC_API_TOKENS": TOKEN, "FLOWC_TOKEN_RATE": "1000", "FLOWC_TOKEN_BURST": "1000"}

#: An answer, or what happened instead (a connection the server closed while we sent).
Answer = httpx.Response | str
Attack = Callable[[httpx.AsyncClient], Awaitable[Sequence[Answer]]]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far, in MiB (Linux's VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def worst_wait(client: httpx.AsyncClient, stop: asyncio.Event) -> float:
    """Probe `/healthz` until `stop`; the longest answer, in ms."""
    worst = 0.0
    while not stop.is_set():
        start = time.perf_counter()
        await client.get("/healthz")
        worst = max(worst, (time.perf_counter() - start) * 1000)
        await asyncio.sleep(0.01)
    return worst


# -- the attacks: each sends its requests and returns the answers --------------------------


async def create(client: httpx.AsyncClient, source: str) -> httpx.Response:
    """`POST /graph/create` of flow text."""
    return await client.post(
        "/graph/create", content=source, headers={"content-type": "text/plain"}
    )


async def run(client: httpx.AsyncClient, source: str, data: dict[str, Any]) -> list[httpx.Response]:
    """Save `source` and run it on `data`, waiting for the outcome; both answers."""
    created = await create(client, source)
    if created.status_code != 201:
        return [created]
    body = {"graph_id": created.json()["graph_id"], "input": data, "wait": True}
    return [created, await client.post("/graph/run", json=body)]


def balanced(operator: str, leaf: str, levels: int) -> str:
    """`((x*x)*(x*x))...`: a balanced tree of `levels` levels over `leaf`."""
    text = leaf
    for _ in range(levels):
        text = f"({text}{operator}{text})"
    return text


async def product_tree(client: httpx.AsyncClient) -> Sequence[Answer]:
    """An 8 KB balanced `x*x` tree over a 64-bit integer (was: 24-27 s of a held loop)."""
    condition = balanced("*", "x", 10)
    return await run(client, f"tick ? {condition} > 0 -> end : end", {"x": 2**62})


async def concat_tree(client: httpx.AsyncClient) -> Sequence[Answer]:
    """A 4 KB `s+s` tree over a 1 MB string (was: 2.04 GB and a 14.8 s stall)."""
    condition = balanced("+", "s", 9)
    return await run(client, f'tick ? {condition} == "" -> end : end', {"s": "x" * 1_000_000})


async def constant_overflow(client: httpx.AsyncClient) -> Sequence[Answer]:
    """`999…9 / 3` and `1 / 0` as constants (was: a 500 from check and create)."""
    nines = "9" * 5000
    check = await client.post(
        "/graph/check", json={"source": f"tick ? {nines} / 3 > 1 -> end : end"}
    )
    return [check, await create(client, "tick ? 1 / 0 == 1 -> end : end")]


async def deep_nesting(client: httpx.AsyncClient) -> Sequence[Answer]:
    """10,000 nested parentheses in text; a 200-deep `not` chain in IR."""
    text = await create(client, "tick ? " + "(" * 10_000 + "n" + ")" * 10_000 + " -> end : end")
    condition: dict[str, Any] = {"type": "path", "path": ["n"]}
    for _ in range(200):
        condition = {"type": "unary", "op": "not", "operand": condition}
    arm = {"condition": condition, "target": "end"}
    ir = {
        "ir_version": 1,
        "start": "tick",
        "nodes": [{"name": "tick", "tool": "tick", "args": {}}],
        "routes": {"tick": {"kind": "branch", "arms": [arm], "otherwise": "end"}},
    }
    return [text, await client.post("/graph/create", json={"ir": ir})]


async def huge_integers(client: httpx.AsyncClient) -> Sequence[Answer]:
    """A 4,300-digit input; 2**63 - 1 that a tool increments (was: storage_error, a 500)."""
    created = await create(client, "tick -> end")
    graph = created.json()["graph_id"]
    huge = await client.post(
        "/graph/run",
        content=f'{{"graph_id": "{graph}", "input": {{"n": {"7" * 4300}}}, "wait": true}}',
        headers={"content-type": "application/json"},
    )
    body = {"graph_id": graph, "input": {"n": 2**63 - 1}, "wait": True}
    return [huge, await client.post("/graph/run", json=body)]


async def max_steps(client: httpx.AsyncClient) -> Sequence[Answer]:
    """`set max_steps = 1000000` with a quick tool (was: a 42.7 s stall, 963 MB)."""
    return await run(client, "set max_steps = 1000000\ntick ? n < 1000000 -> tick : end", {})


async def big_review(client: httpx.AsyncClient) -> Sequence[Answer]:
    """A 1.7 MB `code` for the review tools (was: a 9.7 s stall)."""
    flow = "analyze -> style -> score; score ? score<80 -> refine : end"
    return await run(client, flow, {"code": python_file(1_700_000)})


async def long_steps(client: httpx.AsyncClient) -> Sequence[Answer]:
    """A 10,000-step run (the default ceiling), then its steps, page after page."""
    answers = await run(client, "set max_steps = 10000\ntick ? n < 10000 -> tick : end", {})
    if answers[-1].status_code != 200:
        return answers
    run_id = answers[-1].json()["run_id"]
    after: int | None = 0
    while after is not None:
        page = await client.get(f"/graph/state/{run_id}/steps", params={"after": after})
        answers.append(page)
        after = page.json().get("next") if page.status_code == 200 else None
    return answers


async def big_flows(client: httpx.AsyncClient) -> Sequence[Answer]:
    """1 MiB flows: `tick -> tick -> …` and a chain of unknown nodes (was: 22.9 GB, 12 s)."""
    chain = "tick -> " * (MIB // 8 - 8) + "end"
    unknown = " -> ".join(f"n{i}" for i in range(90_000)) + " -> end"
    return [
        await client.post("/graph/check", json={"source": chain}),
        await client.post("/graph/check", json={"source": unknown[: MIB - 100]}),
        await create(client, unknown[: MIB - 100]),
    ]


async def hostile_bodies(client: httpx.AsyncClient) -> Sequence[Answer]:
    """3 MiB of garbage, 100,000 nested JSON arrays, a wrong token, no token."""
    headers = {"content-type": "application/json", **client.headers}
    # The server answers 413 as soon as the body passes the limit, and closes the
    # connection: a client still sending may see the close before it reads the answer.
    async with httpx.AsyncClient(base_url=str(client.base_url), headers=headers) as fresh:
        try:
            garbage: Answer = await fresh.post("/graph/run", content=b"\xff" * (3 * MIB))
        except httpx.TransportError:
            garbage = "closed while sending"
    return [
        garbage,
        await client.post("/graph/run", content="[" * 100_000 + "]" * 100_000, headers=headers),
        await client.get("/tools", headers={"authorization": "Bearer not-the-token"}),
        await httpx.AsyncClient(base_url=str(client.base_url)).get("/tools"),
    ]


async def rapid_creates(client: httpx.AsyncClient) -> Sequence[Answer]:
    """300 creates at once (was: 300 x 201 with no auth at all)."""
    return list(await asyncio.gather(*(create(client, "tick -> end") for _ in range(300))))


ATTACKS: dict[str, Attack] = {
    "x*x tree, 8 KB": product_tree,
    "s+s tree over 1 MB": concat_tree,
    "constant 999…9 / 3, 1 / 0": constant_overflow,
    "10,000 parentheses; 200-deep IR": deep_nesting,
    "4,300-digit int; int64 overflow": huge_integers,
    "max_steps = 1,000,000": max_steps,
    "review of 1.7 MB": big_review,
    "10,000-step run + every page": long_steps,
    "1 MiB flows": big_flows,
    "hostile bodies, no token": hostile_bodies,
    "300 creates at once": rapid_creates,
}


def outcome(answer: Answer) -> str:
    """`200 failed/limit`, `422`, `201`: an answer's status, and a run's outcome."""
    if isinstance(answer, str):
        return answer
    text = str(answer.status_code)
    if answer.status_code == 200 and answer.request.url.path == "/graph/run":
        body = answer.json()
        text += f" {body['status']}" + (f"/{body['error']['code']}" if body.get("error") else "")
    return text


async def main(args: argparse.Namespace) -> int:
    """Serve, attack, print the table; exit 1 when any answer was a 5xx."""
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, database {'PostgreSQL' if args.pg else 'SQLite'}"
    )
    print("\n| attack | answers | largest answer | worst /healthz | server peak RSS |")
    print("|---|---|---:|---:|---:|")
    server_errors, worst_stall = 0, 0.0
    with tempfile.TemporaryDirectory(prefix="flowc-adversarial-") as folder:
        async with (
            database(args.pg, Path(folder)) as url,
            served(url, Path(folder) / "serve.log", SERVER_ENV) as (base, server),
        ):
            headers = {"authorization": f"Bearer {TOKEN}"}
            async with (
                httpx.AsyncClient(base_url=base, headers=headers, timeout=300) as client,
                httpx.AsyncClient(base_url=base, timeout=300) as prober,
            ):
                for label, attack in ATTACKS.items():
                    stop = asyncio.Event()
                    waiting = asyncio.ensure_future(worst_wait(prober, stop))
                    try:
                        answers = await attack(client)
                    except httpx.TransportError as exc:
                        stop.set()
                        await asyncio.gather(waiting, return_exceptions=True)
                        alive = "alive" if server.poll() is None else f"exit {server.returncode}"
                        print(f"| {label} | {type(exc).__name__} (server {alive}) | | | |")
                        log = (Path(folder) / "serve.log").read_text(errors="replace")
                        print(log[-3000:])
                        return 1
                    stop.set()
                    worst = await waiting
                    counts: dict[str, int] = {}
                    for answer in answers:
                        counts[outcome(answer)] = counts.get(outcome(answer), 0) + 1
                    shown = ", ".join(
                        f"{n} x {what}" if n > 1 else what for what, n in counts.items()
                    )
                    largest = max(len(a.content) for a in answers if not isinstance(a, str))
                    server_errors += sum(
                        not isinstance(a, str) and a.status_code >= 500 for a in answers
                    )
                    worst_stall = max(worst_stall, worst)
                    print(
                        f"| {label} | {shown} | {largest / 1024:,.1f} KiB | {worst:,.0f} ms "
                        f"| {peak_rss_mb(server.pid):,.0f} MiB |",
                        flush=True,
                    )
            log = (Path(folder) / "serve.log").read_text(errors="replace")
    tracebacks = log.count("Traceback")
    print(f"\n5xx answers: {server_errors}; tracebacks in the server's log: {tracebacks}")
    print(f"worst /healthz wait: {worst_stall:,.0f} ms")
    return 1 if server_errors or tracebacks else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    sys.exit(asyncio.run(main(parser.parse_args())))
