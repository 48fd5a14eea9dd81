"""Program -> diagram source: a Mermaid flowchart or a Graphviz DOT digraph.

Nodes are labelled with their name, with their tool when it differs, and with their own
policies (`fetch (call_api) with timeout = 5, retries = 3`); branch edges carry the
condition's canonical text and the last one `else`; an error route (`on_error`) is a
dashed edge labelled `on error`; parallel branches are edges from the node they start
after to each branch, and from each branch's last node to where they join.  `start` and
`end` are drawn as circles, a wait as a hexagon and a map as a stack.  A sub-flow is drawn
as a subgraph holding the child's own diagram (in DOT, a node with a dotted edge to the
cluster that holds it).  Labels are escaped for each format, so any condition text is safe.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise

from flowc.compiler.program import END, POLICIES, START, Goto, Parallel, Policy, Program
from flowc.dsl.formatter import format_expr

#: The label of a branch's last edge, taken when no condition holds.
ELSE_LABEL = "else"
#: The label of an error route's edge, taken when the node's step fails.
ERROR_LABEL = "on error"

# Mermaid reads `#name;` and `#code;` as entities; a bare `\n` would become a line break.
_MERMAID_ESCAPES = str.maketrans(
    {
        "#": "#35;",
        '"': "#quot;",
        "&": "#amp;",
        "<": "#lt;",
        ">": "#gt;",
        "|": "#124;",
        "\\": "#92;",
    }
)
_DOT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})


def edges(program: Program) -> Iterator[tuple[str, str, str | None]]:
    """Every edge as (source, target, label): `start`'s first, then each route in order."""
    yield START, program.start, None
    for name, route in program.routes.items():
        if isinstance(route, Goto):
            yield name, route.target, None
            continue
        if isinstance(route, Parallel):
            for branch in route.branches:
                yield name, branch[0], None
                for source, target in pairwise(branch):
                    yield source, target, None
                yield branch[-1], route.join, None
            continue
        for arm in route.arms:
            yield name, arm.target, format_expr(arm.condition)
        yield name, route.otherwise, ELSE_LABEL


def error_edges(program: Program) -> Iterator[tuple[str, str]]:
    """Every error route as (source, target), in node order."""
    for name in program.nodes:
        target = program.error_route(name)
        if target is not None:
            yield name, target


def node_label(program: Program, name: str) -> str:
    """`name`, or `name (tool)` when the node runs a tool of another name; then its policies."""
    node = program.nodes.get(name)
    if node is None:
        return name
    if node.wait is not None:
        timeout = "" if node.wait.timeout is None else f", {_number(node.wait.timeout)} s"
        label = f'{name} (wait "{node.wait.name}"{timeout})'
    elif node.map is not None:
        label = f"{name} (for {node.map.item} in {node.map.over}: {node.tool})"
    elif node.flow is not None:
        label = f"{name} (flow {node.flow.name})"
    else:
        label = name if node.tool == name else f"{name} ({node.tool})"
    if node.policy is not None:
        label += policy_text(node.policy)
    return label


def policy_text(policy: Policy) -> str:
    """` with timeout = 5, retries = 3` as the DSL writes it; empty when nothing is given."""
    given = [(name, getattr(policy, name)) for name in POLICIES if name != "on_error"]
    shown = [f"{name} = {_number(value)}" for name, value in given if value is not None]
    return f" with {', '.join(shown)}" if shown else ""


def _number(value: float) -> str:
    text = repr(value)
    return text.removesuffix(".0")


def _leads_to_end(program: Program) -> bool:
    return any(target == END for _, target, _ in edges(program)) or any(
        target == END for _, target in error_edges(program)
    )


# -------------------------------------------------------------------- Mermaid


def _mermaid_id(name: str) -> str:
    # Prefixes keep names clear of Mermaid's keywords (`end`, `style`, `click`, ...).
    return {START: "flow_start", END: "flow_end"}.get(name, f"node_{name}")


def _mermaid_text(text: str) -> str:
    return '"' + text.translate(_MERMAID_ESCAPES) + '"'


def to_mermaid(program: Program) -> str:
    """A Mermaid `flowchart TD`, titled with the flow's name when it has one."""
    lines = [f"---\ntitle: {program.name}\n---"] if program.name else []
    lines.append("flowchart TD")
    _mermaid_lines(program, "", "    ", lines, [0])
    return "\n".join(lines) + "\n"


def _mermaid_lines(
    program: Program, prefix: str, indent: str, lines: list[str], count: list[int]
) -> None:
    """The lines of one flow's nodes and edges, ids prefixed (a sub-flow's are `subN_`)."""

    def ident(name: str) -> str:
        return prefix + _mermaid_id(name)

    lines.append(f"{indent}{ident(START)}(({_mermaid_text(START)}))")
    for name, node in program.nodes.items():
        text = _mermaid_text(node_label(program, name))
        child = _child(program, name)
        if child is not None:
            count[0] += 1
            lines.append(f"{indent}subgraph {ident(name)}[{text}]")
            lines.append(f"{indent}    direction TB")
            _mermaid_lines(child, f"sub{count[0]}_", indent + "    ", lines, count)
            lines.append(f"{indent}end")
            continue
        shape = (
            f"{{{{{text}}}}}"
            if node.wait is not None
            else f"[[{text}]]"
            if node.map is not None
            else f"[{text}]"
        )
        lines.append(f"{indent}{ident(name)}{shape}")
    if _leads_to_end(program):
        lines.append(f"{indent}{ident(END)}((({_mermaid_text(END)})))")
    for source, target, label in edges(program):
        arrow = "-->" if label is None else f"-->|{_mermaid_text(label)}|"
        lines.append(f"{indent}{ident(source)} {arrow} {ident(target)}")
    for source, target in error_edges(program):
        label = _mermaid_text(ERROR_LABEL)
        lines.append(f"{indent}{ident(source)} -.->|{label}| {ident(target)}")


def _child(program: Program, name: str) -> Program | None:
    """The Program of node `name`'s sub-flow, when it is one and its child is known."""
    from flowc.compiler.ir import program_from_ir

    node = program.nodes.get(name)
    if node is None or node.flow is None or node.flow.child is None:
        return None
    return program_from_ir(node.flow.child)


# ------------------------------------------------------------------------ DOT


def _dot_text(text: str) -> str:
    return '"' + text.translate(_DOT_ESCAPES) + '"'


def to_dot(program: Program) -> str:
    """A Graphviz `digraph` named after the flow (`flow` when it has no name)."""
    lines = [
        f"digraph {_dot_text(program.name or 'flow')} {{",
        "    node [shape=box, style=rounded];",
    ]
    _dot_lines(program, "", "    ", lines)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_lines(program: Program, prefix: str, indent: str, lines: list[str]) -> None:
    """One flow's nodes and edges; a sub-flow's child is a cluster its node points into.

    A child's nodes are named `parent/child`: `/` is in no node's name.
    """

    def ident(name: str) -> str:
        return _dot_text(prefix + name)

    lines.append(f"{indent}{ident(START)} [shape=circle{_dot_label(prefix, START)}];")
    clusters: list[tuple[str, Program]] = []
    for name, node in program.nodes.items():
        label = node_label(program, name)
        given = [f"label={_dot_text(label)}"] if label != name or prefix else []
        if node.wait is not None:
            given.append("shape=hexagon")
        elif node.map is not None:
            given.append("shape=box3d")
        elif node.flow is not None:
            given.append("shape=component")
        attributes = f" [{', '.join(given)}]" if given else ""
        lines.append(f"{indent}{ident(name)}{attributes};")
        child = _child(program, name)
        if child is not None:
            clusters.append((name, child))
    if _leads_to_end(program):
        lines.append(f"{indent}{ident(END)} [shape=doublecircle{_dot_label(prefix, END)}];")
    for source, target, condition in edges(program):
        attributes = "" if condition is None else f" [label={_dot_text(condition)}]"
        lines.append(f"{indent}{ident(source)} -> {ident(target)}{attributes};")
    for source, target in error_edges(program):
        attributes = f" [label={_dot_text(ERROR_LABEL)}, style=dashed]"
        lines.append(f"{indent}{ident(source)} -> {ident(target)}{attributes};")
    for name, child in clusters:
        inner = f"{prefix}{name}/"
        node = program.nodes[name]
        title = f"flow {node.flow.name}" if node.flow is not None else name
        lines.append(f"{indent}subgraph {_dot_text('cluster_' + inner)} {{")
        lines.append(f"{indent}    label={_dot_text(title)}; style=dashed;")
        _dot_lines(child, inner, indent + "    ", lines)
        lines.append(f"{indent}}}")
        lines.append(f"{indent}{ident(name)} -> {_dot_text(inner + START)} [style=dotted];")


def _dot_label(prefix: str, name: str) -> str:
    """`, label="start"` for a child's `start` or `end`, whose id holds its parent's name."""
    return f", label={_dot_text(name)}" if prefix else ""
