"""Program -> diagnostics about its shape: loops that never end, unreachable and dead ends.

Also a `max_steps` too small for the shortest run (E402).  All walks are iterative, so a
20,000-node flow needs no deep recursion.
"""

from __future__ import annotations

from collections import deque

from flowc.compiler.program import END, START, Goto, Program
from flowc.dsl.diagnostics import Diagnostic, error, warning


def check_graph(program: Program) -> list[Diagnostic]:
    """Traps (an error), then unreachable, unused and dead-end nodes (warnings)."""
    problems = _traps(program)
    problems += _too_few_steps(program)
    reachable = _reachable(program)
    for name, node in program.nodes.items():
        if name not in program.mentioned and name != program.start:
            problems.append(
                warning(
                    "W503",
                    f"node `{name}` is declared but never used",
                    node.span,
                    help=f"route to it (`... -> {name}`) or remove the declaration",
                )
            )
        elif name not in reachable:
            problems.append(
                warning(
                    "W501",
                    f"node `{name}` can never be reached from `{program.start}`",
                    node.span,
                )
            )
        elif name not in program.routes:
            problems.append(
                warning(
                    "W502",
                    f"node `{name}` has no outgoing edge, so the run ends there",
                    node.span,
                    help=f"write `{name} -> end` to say so",
                )
            )
    return problems


def _reachable(program: Program) -> set[str]:
    seen = {program.start}
    queue = deque([program.start])
    while queue:
        name = queue.popleft()
        for target in (*program.successors(name), *program.rejected.get(name, ())):
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def shortest_run(program: Program) -> list[str]:
    """The nodes of a shortest run from the start to its end (at `end` or a dead end).

    Empty when no run can finish.  Each node on it is one step of `max_steps`.
    """
    start = program.start
    if start not in program.nodes:
        return []
    parents: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        name = queue.popleft()
        targets = program.successors(name)
        if not targets or END in targets:
            path: list[str] = []
            current: str | None = name
            while current is not None:
                path.append(current)
                current = parents[current]
            return path[::-1]
        for target in targets:
            if target not in parents and target in program.nodes:
                parents[target] = name
                queue.append(target)
    return []


#: Nodes of a path shown in a message at most: the first ones and the last ones.
SHOWN_PATH_NODES = 8


def show_path(names: list[str]) -> str:
    """`start → a → b → end`; a long path keeps its ends around a `…`."""
    if len(names) > SHOWN_PATH_NODES:
        half = SHOWN_PATH_NODES // 2
        names = [*names[:half], "…", *names[-half:]]
    return " → ".join(names)


def _too_few_steps(program: Program) -> list[Diagnostic]:
    """E402 when `max_steps` is smaller than the number of nodes every run goes through."""
    run = shortest_run(program)
    if len(run) <= program.max_steps:
        return []
    ends = [END] if END in program.successors(run[-1]) else []
    shown = show_path([START, *run, *ends])
    return [
        error(
            "E402",
            f"max_steps is {program.max_steps:,}, but the shortest run takes "
            f"{len(run):,} steps: `{shown}`",
            program.max_steps_span,
            help=f"raise max_steps to at least {len(run)}: `set max_steps = {len(run)}`",
        )
    ]


def _traps(program: Program) -> list[Diagnostic]:
    """One error per loop that every path out of leads back into: `end` is out of reach."""
    predecessors: dict[str, list[str]] = {}
    for name in program.routes:
        for target in program.successors(name):
            predecessors.setdefault(target, []).append(name)
    # A run finishes at `end` or at a node without a route.
    names = {*program.nodes, *predecessors}
    finished = [END, *(name for name in names if name not in program.routes)]
    finished += program.rejected  # which of its two rules is meant is for E102 to ask
    can_finish = set(finished)
    queue = deque(finished)
    while queue:
        for source in predecessors.get(queue.popleft(), ()):
            if source not in can_finish:
                can_finish.add(source)
                queue.append(source)
    problems: list[Diagnostic] = []
    done: set[str] = set()
    for name in program.routes:
        if name in can_finish or name in done:
            continue
        # Walk forward inside the trap until a node repeats: that closes the loop.
        path: list[str] = []
        on_path: dict[str, int] = {}
        current = name
        while current not in on_path and current not in done:
            on_path[current] = len(path)
            path.append(current)
            current = next(t for t in program.successors(current) if t not in can_finish)
        done.update(path)
        if current not in on_path:
            continue  # led into a loop that is already reported
        loop = path[on_path[current] :]
        route = program.routes[loop[0]]
        shown = " -> ".join([*loop, loop[0]])
        problems.append(
            error(
                "E401",
                f"this loop never reaches `end`: {shown}",
                route.span,
                help=(
                    f"give `{loop[-1]}` a branch that can leave the loop, "
                    f"for example `{loop[-1]} ? done -> end : {loop[0]}`"
                    if isinstance(program.routes[loop[-1]], Goto)
                    else f"make one of the targets of the branch on `{loop[-1]}` lead to `end`"
                ),
            )
        )
    return problems
