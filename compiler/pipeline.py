"""Source text or IR JSON -> checked Program -> IR: the one function that runs every stage.

`check_source` gives all diagnostics without building the pydantic IR (what `flowc check`
runs); `compile_source` also builds the IR and raises `FlowError` when there are errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowc.compiler.dataflow import Analysis, Facts, check_dataflow
from flowc.compiler.expressions import check_branch
from flowc.compiler.graph import check_graph
from flowc.compiler.lowering import lower
from flowc.compiler.program import END, START, WAIT, Branch, Program
from flowc.compiler.subflows import FlowResolver, check_child_inputs, resolve_subflows
from flowc.compiler.suggestions import suggestion_budget
from flowc.compiler.tools import ToolSpec, check_tools
from flowc.dsl.diagnostics import WHOLE_TEXT, Diagnostic, FlowError, error
from flowc.dsl.gcpause import collector_paused
from flowc.dsl.parser import parse

if TYPE_CHECKING:
    from flowc.compiler.ir import Flow

Tools = Mapping[str, ToolSpec] | Iterable[ToolSpec] | None


@dataclass(frozen=True, slots=True)
class Checked:
    """Everything found in a flow, and its Program when lowering got that far."""

    program: Program | None
    diagnostics: tuple[Diagnostic, ...]

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """The diagnostics that are errors."""
        return tuple(d for d in self.diagnostics if d.is_error)

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        """The diagnostics that are warnings."""
        return tuple(d for d in self.diagnostics if not d.is_error)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A flow that compiled: its IR and the warnings about it."""

    ir: Flow
    warnings: tuple[Diagnostic, ...]


def _tool_table(tools: Tools) -> dict[str, ToolSpec] | None:
    if tools is None:
        return None
    if isinstance(tools, Mapping):
        return dict(tools)
    return {spec.name: spec for spec in tools}


def _sorted(problems: list[Diagnostic]) -> tuple[Diagnostic, ...]:
    return tuple(sorted(problems, key=Diagnostic.sort_key))


def check_source(
    text: str,
    *,
    tools: Tools = None,
    filename: str | None = None,
    flows: FlowResolver | None = None,
) -> Checked:
    """Parse, lower and check DSL text; never raises for a bad flow.

    `flows` finds the flows its sub-flow nodes name (`compiler.subflows`); without it a
    sub-flow node is an error (E150).
    """
    with collector_paused(), suggestion_budget():
        return _check_source(text, tools, filename, flows)


def _check_source(
    text: str, tools: Tools, filename: str | None, flows: FlowResolver | None
) -> Checked:
    try:
        flow = parse(text, filename)
    except FlowError as exc:
        return Checked(None, exc.diagnostics)
    program, problems = lower(flow, text)
    if program.nodes:
        problems += check_program(program, _tool_table(tools), flows)
    # The parser's warnings (W017), unless an error in the same place says it already (E601).
    taken = {problem.span for problem in problems if problem.is_error}
    problems += [found for found in flow.warnings if found.span not in taken]
    return Checked(program, _sorted(problems))


def check_program(
    program: Program, tools: dict[str, ToolSpec] | None, flows: FlowResolver | None = None
) -> list[Diagnostic]:
    """The semantic checks, shared by DSL text and IR documents.

    Sub-flow nodes get their children first (from `flows`, or as an IR document gave
    them): the data-flow checks read what the children take and give.
    """
    problems = resolve_subflows(program, flows)
    problems += check_child_inputs(program)
    analysis = Analysis(program, tools)
    unreached = Facts(0, 0)
    for name, route in program.routes.items():
        if isinstance(route, Branch):
            facts = analysis.exit(name) if name in program.nodes else None
            problems += check_branch(route, analysis.path_types(facts or unreached))
    if tools is not None:
        problems += check_tools(program, tools)
    problems += check_dataflow(analysis)
    problems += check_graph(program)
    return problems


def compile_source(
    text: str,
    *,
    tools: Tools = None,
    filename: str | None = None,
    flows: FlowResolver | None = None,
) -> Compiled:
    """DSL text -> IR and warnings; raises `FlowError` carrying every diagnostic on error."""
    with collector_paused(), suggestion_budget():
        return _finish(_check_source(text, tools, filename, flows))


def _finish(checked: Checked) -> Compiled:
    if checked.errors or checked.program is None:
        raise FlowError(list(checked.diagnostics))
    from flowc.compiler.ir import to_ir

    return Compiled(to_ir(checked.program), checked.warnings)


def check_ir(
    document: Mapping[str, Any] | str | bytes,
    *,
    tools: Tools = None,
    flows: FlowResolver | None = None,
) -> Checked:
    """Check an IR document (a mapping or JSON text) with the same checks as DSL text.

    Its sub-flows keep the children they hold, unless `flows` finds them again.
    """
    from pydantic import ValidationError

    from flowc.compiler.ir import Flow, program_from_ir

    try:
        if isinstance(document, (str, bytes)):
            flow = Flow.model_validate_json(document)
        else:
            flow = Flow.model_validate(document)
    except ValidationError as exc:
        found = exc.errors()
        locations = [tuple(e.get("loc", ())) for e in found]
        # A bad item also fails its container's own constraint: report the item only.
        return Checked(
            None,
            tuple(
                _validation_problem(e)
                for e, loc in zip(found, locations, strict=True)
                if not any(other[: len(loc)] == loc and other != loc for other in locations)
            ),
        )
    except (ValueError, RecursionError) as exc:  # JSON too deep or not JSON at all
        return Checked(None, (error("E020", f"invalid IR: {exc}", WHOLE_TEXT),))
    problems = _ir_structure(flow)
    program = program_from_ir(flow)
    if not problems:
        with suggestion_budget():
            problems += check_program(program, _tool_table(tools), flows)
    return Checked(program, _sorted(problems))


def compile_ir(
    document: Mapping[str, Any] | str | bytes,
    *,
    tools: Tools = None,
    flows: FlowResolver | None = None,
) -> Compiled:
    """An IR document -> the same IR, checked; raises `FlowError` on error."""
    return _finish(check_ir(document, tools=tools, flows=flows))


def _validation_problem(problem: Any) -> Diagnostic:
    where = ".".join(str(part) for part in problem.get("loc", ())) or "the document"
    return error("E020", f"invalid IR at `{where}`: {problem.get('msg', 'invalid')}", WHOLE_TEXT)


def _ir_structure(flow: Flow) -> list[Diagnostic]:
    """What an IR document can get wrong that the DSL cannot express."""
    from flowc.compiler.ir import Branch as IrBranch
    from flowc.compiler.ir import Parallel as IrParallel

    problems: list[Diagnostic] = []
    names: set[str] = set()
    for node in flow.nodes:
        try:
            json.dumps(node.args, allow_nan=False)
        except (TypeError, ValueError) as exc:
            problems.append(
                error(
                    "E020",
                    f"invalid IR: the arguments of node `{node.name}` are not JSON: {exc}",
                    WHOLE_TEXT,
                )
            )
        if node.name in names or node.name in (START, END):
            problems.append(
                error("E101", f"node `{node.name}` is defined twice or is reserved", WHOLE_TEXT)
            )
        names.add(node.name)
    if flow.start not in names:
        problems.append(error("E111", f"the start node `{flow.start}` is not a node", WHOLE_TEXT))
    problems += _ir_state(flow)
    in_branches: set[str] = set()
    for source, route in flow.routes.items():
        if source not in names:
            problems.append(
                error("E111", f"a route leaves `{source}`, which is not a node", WHOLE_TEXT)
            )
        if isinstance(route, IrBranch):
            targets = [arm.target for arm in route.arms] + [route.otherwise]
        elif isinstance(route, IrParallel):
            members = [name for branch in route.branches for name in branch]
            targets = [*members, route.join]
            for name in members:
                if name in (START, END) or name in in_branches:
                    problems.append(
                        error(
                            "E132",
                            f"`{name}` cannot be in a parallel branch"
                            if name in (START, END)
                            else f"node `{name}` is in more than one parallel branch",
                            WHOLE_TEXT,
                        )
                    )
                in_branches.add(name)
        else:
            targets = [route.target]
        for target in targets:
            if target == START:
                problems.append(error("E103", "nothing can lead into `start`", WHOLE_TEXT))
            elif target != END and target not in names:
                problems.append(
                    error(
                        "E111", f"`{source}` leads to `{target}`, which is not a node", WHOLE_TEXT
                    )
                )
    for node in flow.nodes:
        if node.tool == WAIT and node.wait is None:
            problems.append(
                error(
                    "E140",
                    f"node `{node.name}` runs the tool `wait`, which is built in: "
                    'give the node `"wait": {"name": ...}` instead',
                    WHOLE_TEXT,
                )
            )
        on_error = node.policy.on_error if node.policy is not None else None
        if on_error == START:
            problems.append(error("E103", "nothing can lead into `start`", WHOLE_TEXT))
        elif on_error is not None and on_error != END and on_error not in names:
            problems.append(
                error(
                    "E111",
                    f"the error route of `{node.name}` leads to `{on_error}`, which is not a node",
                    WHOLE_TEXT,
                )
            )
    return problems


def _ir_state(flow: Flow) -> list[Diagnostic]:
    """An IR document's state declarations: each key once, each default JSON of its type."""
    from flowc.compiler.types import parse_type, problems_with

    problems: list[Diagnostic] = []
    seen: set[str] = set()
    for key in flow.state:
        if key.name in seen:
            problems.append(error("E121", f"state key `{key.name}` is declared twice", WHOLE_TEXT))
        seen.add(key.name)
        try:
            json.dumps(key.default, allow_nan=False)
        except (TypeError, ValueError) as exc:
            message = f"invalid IR: the default of state key `{key.name}` is not JSON: {exc}"
            problems.append(error("E020", message, WHOLE_TEXT))
            continue
        found = (
            problems_with(parse_type(key.type), key.default, limit=1) if not key.required else []
        )
        for where, message in found:
            at = f" at `{where}`" if where else ""
            problems.append(
                error(
                    "E122",
                    f"the default of `{key.name}` does not fit its type `{key.type}`{at}: "
                    f"{message}",
                    WHOLE_TEXT,
                )
            )
    return problems
