"""Program -> diagnostics about its shape: loops that never end, unreachable and dead ends.

A node's error route (`with on_error = NODE`) is an edge like a route's: it reaches its
target, and it is a way out of a loop.

Also a `max_steps` too small for the shortest run (E402).  All walks are iterative, so a
20,000-node flow needs no deep recursion.
"""

from __future__ import annotations

from collections import deque

from flowc.compiler.program import END, START, Goto, Parallel, Program
from flowc.dsl.diagnostics import WHOLE_TEXT, Diagnostic, Span, error, warning


def check_graph(program: Program) -> list[Diagnostic]:
    """Forks, traps (errors), then unreachable, unused and dead-end nodes (warnings)."""
    problems = _forks(program) if program.branch_of else []
    if not problems:  # a way into a branch makes loops of its own: E134 says what is wrong
        problems += _traps(program)
    problems += _too_few_steps(program)
    reachable = _reachable(program)
    # The nodes of a refused routing rule: that they lead nowhere is that error's doing.
    refused = {*program.rejected, *(t for ts in program.rejected.values() for t in ts)}
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
        elif not program.route_targets(name) and name not in refused:
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
        if program.ends_at(name):
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
    for name in program.nodes:
        for target in program.successors(name):  # an error route is a way out too
            predecessors.setdefault(target, []).append(name)
    # A run finishes at `end` or at a node without a route.
    names = {*program.nodes, *predecessors}
    finished = [END, *(name for name in names if not program.route_targets(name))]
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
        # Where the loop is entered; a branch's node (entered against E134) has no route.
        route = program.routes.get(loop[0])
        node = program.nodes.get(loop[0])
        span = route.span if route is not None else node.span if node is not None else WHOLE_TEXT
        shown = " -> ".join([*loop, loop[0]])
        problems.append(
            error(
                "E401",
                f"this loop never reaches `end`: {shown}",
                span,
                help=_way_out(program, loop),
            )
        )
    return problems


def _way_out(program: Program, loop: list[str]) -> str:
    """How the loop's last node could leave it."""
    last = loop[-1]
    route = program.routes.get(last)
    if isinstance(route, Goto):
        return (
            f"give `{last}` a branch that can leave the loop, "
            f"for example `{last} ? done -> end : {loop[0]}`"
        )
    if route is None:  # the last node of a parallel branch: its join leads back
        join = program.route_targets(last)[0]
        return f"give `{join}`, where the branches join, a branch that can leave the loop"
    return f"make one of the targets of the branch on `{last}` lead to `end`"


def _forks(program: Program) -> list[Diagnostic]:
    """The parallel branches' rules: each node of one goes on along its branch only.

    E133: a node of a branch with a route of its own; E134: a way into one from outside its
    branch (a route, a join, an error route, `start`); E136: a map, a wait or a sub-flow in
    a branch.
    """
    problems: list[Diagnostic] = []
    for name, place in program.branch_of.items():
        node = program.nodes.get(name)
        kind = (
            "wait"
            if node and node.wait
            else "map"
            if node and node.map
            else "sub-flow"
            if node and node.flow
            else None
        )
        if node is not None and kind is not None:
            problems.append(
                error(
                    "E136",
                    f"node `{name}` is a {kind}, and a {kind} cannot run in a parallel "
                    f"branch (after `{place.fork}`)",
                    node.span,
                    help=f"run it before `{place.fork}`'s branches or after they join",
                )
            )
    entries: list[tuple[str, Span, str]] = []
    for source, route in program.routes.items():
        owner = program.branch_of.get(source)
        if owner is not None:
            problems.append(
                error(
                    "E133",
                    f"node `{source}` runs in a parallel branch after `{owner.fork}`, so it "
                    "cannot have a route of its own",
                    route.span,
                    help="put the nodes that follow it in its branch: `[b -> b2, c]`",
                )
            )
        if isinstance(route, Parallel):
            entries.append((route.join, route.join_span, f"`{source}`'s branches join"))
        elif isinstance(route, Goto):
            entries.append((route.target, route.target_span, f"`{source}` leads"))
        else:
            entries += [(arm.target, arm.target_span, f"`{source}` leads") for arm in route.arms]
            entries.append((route.otherwise, route.otherwise_span, f"`{source}` leads"))
    for name, node in program.nodes.items():
        if node.policy is not None and node.policy.on_error is not None:
            entries.append(
                (node.policy.on_error, node.policy.on_error_span, f"`{name}` fails over")
            )
    entries.append((program.start, program.start_span, "the run starts"))
    for target, span, how in entries:
        into = program.branch_of.get(target)
        if into is not None:
            problems.append(
                error(
                    "E134",
                    f"{how} to `{target}`, which runs in a parallel branch after "
                    f"`{into.fork}`: only its branch can lead to it",
                    span,
                    help=f"declare another node for the same tool: `node {target}_2 = TOOL`",
                )
            )
    return problems
