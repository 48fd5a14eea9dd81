"""Program -> diagnostics about its shape: loops that never end, unreachable and dead ends.

All walks are iterative, so a 20,000-node flow needs no deep recursion.
"""

from __future__ import annotations

from collections import deque

from flowc.compiler.program import END, Goto, Program
from flowc.dsl.diagnostics import Diagnostic, error, warning


def check_graph(program: Program) -> list[Diagnostic]:
    """Traps (an error), then unreachable, unused and dead-end nodes (warnings)."""
    problems = _traps(program)
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
        for target in program.successors(queue.popleft()):
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def _traps(program: Program) -> list[Diagnostic]:
    """One error per loop that every path out of leads back into: `end` is out of reach."""
    predecessors: dict[str, list[str]] = {}
    for name in program.routes:
        for target in program.successors(name):
            predecessors.setdefault(target, []).append(name)
    # A run finishes at `end` or at a node without a route.
    names = {*program.nodes, *predecessors}
    finished = [END, *(name for name in names if name not in program.routes)]
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
