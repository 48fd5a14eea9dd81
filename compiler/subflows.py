"""Sub-flows: `node review = flow code_review` -> the child flow, found, checked and held.

A resolver finds a flow by name, or by a pinned `graph_id`: `DirectoryFlows` finds
`NAME.flow` in a list of folders (the CLI's: the file's own, then `--flows DIR`) and
compiles it with the same tools, and with itself for the sub-flows it has in turn;
`StoredFlows` holds what the server looked up in its database before compiling.  Either
knows the chain of flows it is resolving (`active`), outermost first, for cycles.

`resolve_subflows` puts each child's IR into its node, or reports why it cannot: E150 not
found, E151 a cycle, E153 a child with errors, E154 a child that waits, E155 nested too
deep or holding too many nodes in all.  A child's IR is held whole in its parent's IR, so
a run runs what was checked.

The data-flow checks then treat a sub-flow node as a tool with a contract: it reads the
child's required inputs (`child_reads`) and may write what both flows declare
(`child_writes`); `check_child_inputs` says where the parent's declarations do not agree
with the child's (E156).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from flowc.compiler.program import MAX_FLOW_DEPTH, MAX_HELD_NODES, Program
from flowc.compiler.suggestions import did_you_mean
from flowc.compiler.tools import KeyContract, ToolSpec
from flowc.compiler.types import is_assignable, parse_type
from flowc.dsl.diagnostics import Diagnostic, Span, error

if TYPE_CHECKING:
    from flowc.compiler.ir import Flow

#: The suffix of a flow file, which `DirectoryFlows` looks for.
FLOW_SUFFIX = ".flow"


@dataclass(frozen=True, slots=True)
class FoundFlow:
    """A flow a resolver found: its IR, its stored id (the server's), where it came from."""

    ir: Flow
    graph_id: str | None = None
    #: For messages: a file's path, or `graph ID`.
    origin: str = ""


class FlowNotFound(LookupError):
    """No flow by that name (or id): the message says where it looked."""

    def __init__(
        self, message: str, candidates: Sequence[str] = (), help: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.candidates = tuple(candidates)
        #: What to do about it, when no candidate is near.
        self.help = help


class FlowCycle(Exception):
    """The flows being resolved lead back to one of themselves: `path` names them in order."""

    def __init__(self, path: Sequence[str]) -> None:
        super().__init__(" -> ".join(path))
        self.path = tuple(path)


class ChildErrors(Exception):
    """The flow found has errors of its own: where it is, and its diagnostics."""

    def __init__(self, origin: str, errors: Sequence[Diagnostic]) -> None:
        super().__init__(f"{origin} has errors")
        self.origin = origin
        self.errors = tuple(errors)


class FlowResolver(Protocol):
    """Finds the flow a sub-flow node names."""

    @property
    def active(self) -> tuple[str, ...]:
        """The flows being resolved, outermost first (the one being compiled last)."""
        ...

    def find(self, name: str, graph_id: str | None) -> FoundFlow:
        """The flow `name`, or the stored one `graph_id`.

        Raises `FlowNotFound`, `FlowCycle` or `ChildErrors`.
        """
        ...


class DirectoryFlows:
    """Finds `NAME.flow` in `folders`, in order, and compiles it (the CLI's resolver).

    `root` names the flow being compiled (its file's stem), so a child that leads back to
    it is a cycle.  Each file is compiled once per resolver.  A `graph_id` pin is the
    server's business: files are found by name.
    """

    def __init__(
        self,
        folders: Sequence[str | os.PathLike[str]],
        tools: Mapping[str, ToolSpec] | None = None,
        *,
        root: str | None = None,
    ) -> None:
        self.folders = tuple(Path(folder) for folder in folders)
        self.tools = tools
        self._stack: list[str] = [] if root is None else [root]
        self._found: dict[Path, FoundFlow] = {}

    @classmethod
    def beside(
        cls,
        filename: str | None,
        extra: Sequence[str | os.PathLike[str]] = (),
        tools: Mapping[str, ToolSpec] | None = None,
    ) -> DirectoryFlows:
        """The resolver for a file: its folder first (the working one for stdin), then `extra`."""
        if filename is None or filename in ("-", "<stdin>"):
            return cls([Path.cwd(), *extra], tools)
        path = Path(filename)
        return cls([path.parent, *extra], tools, root=path.stem)

    @property
    def active(self) -> tuple[str, ...]:
        """The flows being compiled, outermost first."""
        return tuple(self._stack)

    def _path(self, name: str) -> Path | None:
        for folder in self.folders:
            path = folder / f"{name}{FLOW_SUFFIX}"
            if path.is_file():
                return path
        return None

    def names(self) -> list[str]:
        """The flows the folders hold, by name."""
        found: set[str] = set()
        for folder in self.folders:
            try:
                found.update(p.stem for p in folder.glob(f"*{FLOW_SUFFIX}") if p.is_file())
            except OSError:
                continue
        return sorted(found)

    def find(self, name: str, graph_id: str | None) -> FoundFlow:
        """Compile `NAME.flow` from the first folder that has it."""
        if name in self._stack:
            raise FlowCycle([*self._stack, name])
        path = self._path(name)
        if path is None:
            where = ", ".join(str(folder) for folder in self.folders) or "no folder"
            raise FlowNotFound(
                f"no file `{name}{FLOW_SUFFIX}` in {where}",
                self.names(),
                f"write the flow `{name}` in `{name}{FLOW_SUFFIX}` beside this one, or pass "
                "`--flows DIR`",
            )
        known = self._found.get(path)
        if known is not None:
            return known
        from flowc.compiler.pipeline import check_source

        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise FlowNotFound(f"`{path}` cannot be read: {exc}") from None
        self._stack.append(name)
        try:
            checked = check_source(text, tools=self.tools, filename=str(path), flows=self)
        finally:
            self._stack.pop()
        if checked.errors or checked.program is None:
            raise ChildErrors(str(path), checked.errors)
        from flowc.compiler.ir import to_ir

        found = self._found[path] = FoundFlow(to_ir(checked.program), None, str(path))
        return found


class StoredFlows:
    """Flows looked up beforehand (the server's, from its database), by name and by id.

    `by_name` holds the latest definition of each name, `by_id` the pinned ones; `root`
    is the name of the flow being compiled; `skipped` says why some were not looked up.
    """

    def __init__(
        self,
        by_name: Mapping[str, FoundFlow],
        by_id: Mapping[str, FoundFlow] | None = None,
        *,
        root: str | None = None,
        names: Sequence[str] = (),
        skipped: Mapping[tuple[str, str | None], str] | None = None,
    ) -> None:
        self.by_name = dict(by_name)
        self.by_id = dict(by_id or {})
        self._root = () if root is None else (root,)
        self._names = tuple(names) or tuple(self.by_name)
        #: The `(name, graph_id)` that were not looked up (past a limit), and why.
        self.skipped = dict(skipped or {})

    @property
    def active(self) -> tuple[str, ...]:
        """The flow being compiled."""
        return self._root

    def find(self, name: str, graph_id: str | None) -> FoundFlow:
        """The pinned definition, or the latest one of that name."""
        found = self.by_id.get(graph_id) if graph_id is not None else self.by_name.get(name)
        if found is not None:
            return found
        why = self.skipped.get((name, graph_id))
        if why is not None:
            raise FlowNotFound(why)
        if graph_id is not None:
            raise FlowNotFound(
                f"no stored graph has the id {graph_id}",
                help=f"pin the id of a saved graph, or leave it out for the latest `{name}`",
            )
        raise FlowNotFound(
            f"no stored graph is named `{name}`",
            self._names,
            f"save the flow `{name}` first (`POST /graph/create`)",
        )


def subflow_refs(program: Program) -> Iterator[tuple[str, str | None]]:
    """`(name, graph_id)` of each sub-flow node of a program, in node order."""
    for node in program.nodes.values():
        if node.flow is not None:
            yield node.flow.name, node.flow.graph_id


def _descendants(flow: Flow, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Flow]]:
    """Every sub-flow inside `flow`, with the path of names that leads to it."""
    for node in flow.nodes:
        if node.flow is not None:
            inner = (*path, node.flow.name)
            yield inner, node.flow.ir
            yield from _descendants(node.flow.ir, inner)


def resolve_subflows(program: Program, flows: FlowResolver | None) -> list[Diagnostic]:
    """Give each sub-flow node of `program` its child's IR, or say why it cannot.

    With no resolver, a node keeps the child it came with (an IR document's), and one
    without is E150.  Each child is checked as a whole: cycles (E151), errors (E153),
    waits (E154) and depth (E155).
    """
    problems: list[Diagnostic] = []
    chain = flows.active if flows is not None else ()
    if not chain and program.name:
        chain = (program.name,)
    for name, node in list(program.nodes.items()):
        spec = node.flow
        if spec is None:
            continue
        found: FoundFlow | None = None
        if flows is None:
            if spec.child is None:
                problems.append(
                    error(
                        "E150",
                        f"sub-flow `{spec.name}` cannot be found: no flows were given to look in",
                        spec.span,
                        help="compile it with the flows beside it (`flowc` finds "
                        f"`{spec.name}.flow` beside the file, or in `--flows DIR`)",
                    )
                )
                continue
        else:
            try:
                found = flows.find(spec.name, spec.graph_id)
            except FlowNotFound as missing:
                hint = did_you_mean(spec.name, missing.candidates) or missing.help
                problems.append(
                    error(
                        "E150",
                        f"sub-flow `{spec.name}` cannot be found: {missing.message}",
                        spec.span,
                        help=hint,
                    )
                )
                continue
            except FlowCycle as cycle:
                problems.append(_cycle(cycle.path, spec.span))
                continue
            except ChildErrors as bad:
                cycles = [problem for problem in bad.errors if problem.code == "E151"]
                if cycles:  # the child found the way back: the cycle is this node's too
                    problems.append(dataclasses.replace(cycles[0], span=spec.span))
                    continue
                first = bad.errors[0] if bad.errors else None
                count = len(bad.errors)
                said = (
                    f"; the first, line {first.span.line}, column {first.span.column}: "
                    f"{first.code} {first.message}"
                    if first is not None
                    else ""
                )
                problems.append(
                    error(
                        "E153",
                        f"sub-flow `{spec.name}` ({bad.origin}) has {count} "
                        f"error{'' if count == 1 else 's'}{said}",
                        spec.span,
                        help=f"run `flowc check {bad.origin}`",
                    )
                )
                continue
            spec = dataclasses.replace(spec, child=found.ir, graph_id=found.graph_id)
            program.nodes[name] = dataclasses.replace(node, flow=spec)
        child: Flow = spec.child
        problems += _child_problems(spec.name, child, (*chain, spec.name), spec.span)
    if not problems:
        problems += _too_many_held(program)
    return problems


def _held(flow: Flow, budget: int) -> int:
    """How many nodes `flow`'s sub-flows hold, theirs included; past `budget`, any more."""
    held = 0
    for node in flow.nodes:
        if node.flow is not None:
            child = node.flow.ir
            held += len(child.nodes) + _held(child, budget - held - len(child.nodes))
            if held > budget:
                return held
    return held


def _too_many_held(program: Program) -> list[Diagnostic]:
    """E155 when the sub-flows hold more than `MAX_HELD_NODES` nodes in all."""
    held = 0
    for node in program.nodes.values():
        if node.flow is None or node.flow.child is None:
            continue
        child: Flow = node.flow.child
        held += len(child.nodes) + _held(child, MAX_HELD_NODES - held - len(child.nodes))
        if held > MAX_HELD_NODES:
            return [
                error(
                    "E155",
                    f"the sub-flows this flow runs hold more than {MAX_HELD_NODES:,} nodes in "
                    f"all (theirs included, once per node that runs one), up to `{node.name}`",
                    node.flow.span,
                    help="run the sub-flow from fewer nodes (loop to one with a route), or "
                    "split the flow",
                )
            ]
    return []


def _cycle(path: Sequence[str], span: Span) -> Diagnostic:
    """E151 for `path`, which ends where the cycle closes: shown from where it opens."""
    opens = list(path).index(path[-1])
    shown = " -> ".join(f"`{name}`" for name in path[opens:])
    return error(
        "E151",
        f"sub-flows form a cycle: {shown}",
        span,
        help="a flow cannot run itself, directly or through others: loop with a route instead",
    )


def _child_problems(name: str, child: Flow, path: tuple[str, ...], span: Span) -> list[Diagnostic]:
    """E151 (a name of the chain inside the child), E154 (a wait), E155 (too deep)."""
    problems: list[Diagnostic] = []
    trees = [(path, child), *_descendants(child, path)]
    for inner, flow in trees:
        if inner[-1] in inner[:-1]:
            problems.append(_cycle(inner, span))
            return problems
        if len(inner) > MAX_FLOW_DEPTH:
            problems.append(
                error(
                    "E155",
                    f"sub-flows nest {len(inner)} deep here ({' -> '.join(inner)}), more than "
                    f"{MAX_FLOW_DEPTH}",
                    span,
                    help="flatten some of them into their parents",
                )
            )
            return problems
        for node in flow.nodes:
            if node.wait is not None:
                where = "" if flow is child else f" (through {' -> '.join(inner[len(path) :])})"
                problems.append(
                    error(
                        "E154",
                        f"sub-flow `{name}` waits for input at node `{node.name}`{where}, "
                        "which a sub-flow cannot do",
                        span,
                        help="wait in the parent flow, before or after the sub-flow node",
                    )
                )
                return problems
    return problems


def child_reads(child: Flow) -> tuple[KeyContract, ...]:
    """What a sub-flow node reads: the child's required inputs, with their types."""
    return tuple(KeyContract(key.name, parse_type(key.type)) for key in child.state if key.required)


def child_writes(child: Flow, parent: Program) -> tuple[KeyContract, ...] | None:
    """What a sub-flow node may write, as the data-flow checks read it.

    When both flows declare their state: the keys both declare (only the parent's declared
    keys come back, and the child's tools may write any of its own).  Otherwise None: what
    comes back is whatever the child changed, unknown here.
    """
    if not child.state or not parent.state:
        return None
    return tuple(
        KeyContract(key.name, parse_type(key.type), required=False)
        for key in child.state
        if key.name in parent.state
    )


def check_child_inputs(program: Program) -> list[Diagnostic]:
    """E156 where a key both flows declare has types that do not agree both ways."""
    problems: list[Diagnostic] = []
    for node in program.nodes.values():
        spec = node.flow
        if spec is None or spec.child is None:
            continue
        child: Flow = spec.child
        for key in child.state:
            declared = program.state.get(key.name)
            if declared is None:
                continue
            wanted = parse_type(key.type)
            # The parent's value goes in, and (when the child changes it) comes back out.
            if not is_assignable(declared.type, wanted) or not is_assignable(wanted, declared.type):
                problems.append(
                    error(
                        "E156",
                        f"sub-flow `{spec.name}` declares `{key.name}` as {wanted}, but this "
                        f"flow declares it {declared.type} (line {declared.span.line}): the "
                        "value goes in and comes back out",
                        spec.span,
                        help=f"declare `{key.name}` the same way in both flows",
                    )
                )
    return problems
