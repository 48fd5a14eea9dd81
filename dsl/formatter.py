"""AST -> canonical Flow text: one statement per line, single spaces, minimal parentheses."""

from __future__ import annotations

import json

from flowc.dsl import ast
from flowc.dsl.comments import Comment
from flowc.dsl.diagnostics import Span
from flowc.dsl.layout import LINE_WIDTH, MAX_ALIGNMENT, Line, Piece, lay_out
from flowc.dsl.syntax import ATOM, COMPARISON, LEVELS, RESERVED


def format(flow: ast.Flow) -> str:
    """The canonical text of a flow; `parse(format(f)) == f` and formatting is idempotent.

    Comments come back where they were: a comment on its own line stays above the
    statement that follows it, a comment after code ends the statement's last line.  One
    blank line is kept where the source had blank lines between statements.  As people
    write them by hand, the `=` of neighbouring `node` declarations line up, and so do the
    trailing comments of neighbouring lines.  A statement with a comment inside a condition
    or a value is kept as written (`_as_written`).  Policies after `with` are written in the order
    `timeout, retries, backoff`, so there `parse(format(f))` may reorder them.
    """
    lines: list[Line] = []
    comments = flow.comments
    taken = 0  # comments before this index are written
    previous: ast.Statement | None = None
    for statement in flow.statements:
        span = statement.span
        first_inside = taken
        while first_inside < len(comments) and comments[first_inside].line < span.line:
            first_inside += 1
        after = first_inside
        while after < len(comments) and comments[after].line <= span.end_line:
            after += 1
        above, inside = comments[taken:first_inside], comments[first_inside:after]
        taken = after
        if previous is not None and _blank_line_between(previous, statement, above):
            lines.append(Line())
        lines.extend(Line(comment=comment.text) for comment in above)
        unplaced: list[Comment] = []
        kept = _as_written(statement, inside, flow.lines)
        if kept is not None:
            body = kept
        elif isinstance(statement, (ast.Route, ast.NodeDecl)):
            body, unplaced = _lines_with_comments(statement, inside)
        else:
            body, unplaced = _statement_lines(statement), list(inside[1:])
            if inside:
                body[-1].comment = inside[0].text
        lines.extend(Line(comment=comment.text) for comment in unplaced)  # above it
        lines.extend(body)
        previous = statement
    rest = comments[taken:]
    if rest:
        if previous is not None and rest[0].line > previous.span.end_line + 1:
            lines.append(Line())
        lines.extend(Line(comment=comment.text) for comment in rest)
    _align_declarations(lines)
    _align_comments(lines)
    return "".join(f"{_text(line)}\n" for line in lines)


def _as_written(
    statement: ast.Statement, comments: tuple[Comment, ...], text: tuple[str, ...]
) -> list[Line] | None:
    """The statement's lines as written, when a comment sits inside one of its pieces.

    A comment can only follow a token after which a line may break; inside a condition or
    a value (after a `(`, `[`, `{` or `,` there), the formatter has no place of its own to
    put it, so the statement is kept as written (its first line starts at column 1, its
    other lines keep their indentation) and every comment keeps its neighbours.  None when
    no comment is inside a piece, or when another statement shares one of its lines.
    """
    if not comments or not text:
        return None
    if isinstance(statement, ast.Route):
        spans = [piece.span for piece in _route_pieces(statement)]
    elif isinstance(statement, ast.NodeDecl):
        spans = [piece.span for piece in _declaration_pieces(statement)]
    else:
        spans = [statement.span]
    if not any(_within(span, comment) for span in spans for comment in comments):
        return None
    span = statement.span
    first, last = text[span.line - 1], text[span.end_line - 1]
    after = last[span.end_column - 1 :].strip()
    if first[: span.column - 1].strip() or (after and not after.startswith("#")):
        return None
    written = [line.rstrip() for line in text[span.line - 1 : span.end_line]]
    written[0] = written[0].lstrip()
    return [Line(code=line) for line in written]


def _within(span: Span, comment: Comment) -> bool:
    """Whether `comment` starts inside `span`, not before it or after its end."""
    start = (comment.line, comment.column)
    return (span.line, span.column) < start < (span.end_line, span.end_column)


def _statement_lines(statement: ast.Statement) -> list[Line]:
    if isinstance(statement, ast.NodeDecl):
        return [Line(declares=(statement.name.text, _declared(statement)))]
    return [Line(code=text) for text in format_statement(statement)]


def _align_declarations(lines: list[Line]) -> None:
    """Pad the names of neighbouring declarations so their `=` line up.

    Neighbours are declarations with nothing between them but comment lines.  A name
    longer than `MAX_ALIGNMENT` is written as it is and does not widen the others.
    """
    block: list[Line] = []
    for line in [*lines, Line()]:
        if line.declares is not None:
            block.append(line)
        elif line.code or not line.comment:  # other code, or a blank line, ends a block
            names = (len(d.declares[0]) for d in block if d.declares)
            width = max((n for n in names if n <= MAX_ALIGNMENT), default=0)
            for declaration in block:
                assert declaration.declares is not None
                name, rest = declaration.declares
                declaration.code = f"node {name.ljust(width)} = {rest}"
            block = []


def _align_comments(lines: list[Line]) -> None:
    """Start the trailing comments of neighbouring lines two spaces after the longest code.

    A group holds no line longer than `LINE_WIDTH` (unless it is one line): the line that
    does not fit starts a new group, so one long line does not push every comment near it
    off the screen.
    """
    run: list[Line] = []
    code_width = comment_width = 0
    for line in [*lines, Line()]:
        if line.code and line.comment:
            wider = max(code_width, len(line.code)) + 2 + max(comment_width, len(line.comment))
            if not run or wider <= LINE_WIDTH:
                run.append(line)
                code_width = max(code_width, len(line.code))
                comment_width = max(comment_width, len(line.comment))
                continue
        for member in run:
            member.comment_column = code_width + 2
        run, code_width, comment_width = [], 0, 0
        if line.code and line.comment:  # the line that did not fit starts the next group
            run, code_width, comment_width = [line], len(line.code), len(line.comment)


def _text(line: Line) -> str:
    if line.code and line.comment:
        return f"{line.code.ljust(line.comment_column)}{line.comment}"
    return line.code or line.comment


def _blank_line_between(
    previous: ast.Statement, statement: ast.Statement, comments: tuple[Comment, ...]
) -> bool:
    kinds = {type(previous), type(statement)}
    if len(kinds) == 2 and ast.Route in kinds:
        return True  # declarations and routes are set apart
    gap = statement.span.line - previous.span.end_line - 1
    return gap > len(comments)  # the source had a blank line there


def format_statement(statement: ast.Statement) -> list[str]:
    """One statement as one or more lines."""
    if isinstance(statement, ast.Header):
        return [f"flow {statement.name.text}"]
    if isinstance(statement, ast.Setting):
        return [f"set {statement.name.text} = {format_value(statement.value.value)}"]
    if isinstance(statement, ast.StateDecl):
        return [format_state_decl(statement)]
    if isinstance(statement, ast.NodeDecl):
        return [f"node {statement.name.text} = {_declared(statement)}"]
    return _format_route(statement)


def format_state_decl(declaration: ast.StateDecl) -> str:
    """`state NAME: TYPE` and, when there are, ` = DEFAULT` and ` by REDUCER`."""
    text = f"state {declaration.name.text}: {format_type(declaration.type)}"
    if declaration.default is not None:
        text += f" = {format_value(declaration.default.value)}"
    if declaration.reducer is not None:
        text += f" by {declaration.reducer.text}"
    return text


def format_type(ref: ast.TypeRef) -> str:
    """A type as written canonically: `list[dict]?`."""
    text = ref.name.text
    if ref.item is not None:
        text += f"[{format_type(ref.item)}]"
    return text + ("?" if ref.nullable else "")


def _declared(declaration: ast.NodeDecl) -> str:
    """What follows a declaration's `=`: the tool, its arguments, its policies."""
    return (
        _before_tool(declaration)
        + declaration.tool.text
        + _format_args(declaration.args, declaration.positional)
        + _format_policies(declaration.policies)
    )


def _before_tool(declaration: ast.NodeDecl) -> str:
    """`for ITEM in KEY: ` before a map's tool, `flow ` before a sub-flow's name."""
    if declaration.subflow:
        return "flow "
    over = declaration.over
    return "" if over is None else f"for {over.item.text} in {over.source.text}: "


def _format_policies(policies: tuple[ast.Policy, ...]) -> str:
    """` with NAME = VALUE, ...` in the canonical order, or nothing."""
    if not policies:
        return ""
    written = canonical_policies(policies)
    return " with " + ", ".join(f"{p.name.text} = {_policy_value(p.value)}" for p in written)


def _policy_value(value: ast.JsonValue | ast.Name) -> str:
    """A policy's value: a node's name as written, or a static value."""
    return value.text if isinstance(value, ast.Name) else format_value(value.value)


def canonical_policies(policies: tuple[ast.Policy, ...]) -> tuple[ast.Policy, ...]:
    """Policies in the order the formatter writes them: `timeout, retries, backoff, on_error`.

    Names the language does not know (an error for the compiler) follow, as written.
    """
    rank = {name: index for index, name in enumerate(ast.POLICY_NAMES)}
    return tuple(sorted(policies, key=lambda p: rank.get(p.name.text, len(rank))))


def _format_args(
    args: tuple[ast.Argument, ...] | None, positional: tuple[ast.JsonValue, ...] = ()
) -> str:
    if args is None:
        return ""
    given = [format_value(v.value) for v in positional]
    given += [f"{a.name.text} = {format_value(a.value.value)}" for a in args]
    return f"({', '.join(given)})"


def _format_route(route: ast.Route) -> list[str]:
    return [line.code for line in lay_out(_route_pieces(route), ())[0]]


def _lines_with_comments(
    statement: ast.Route | ast.NodeDecl, comments: tuple[Comment, ...]
) -> tuple[list[Line], list[Comment]]:
    """A route's or a declaration's lines with the comments inside it kept in place."""
    if isinstance(statement, ast.Route):
        return lay_out(_route_pieces(statement), comments)
    lines, unplaced = lay_out(_declaration_pieces(statement), comments)
    if len(lines) == 1:  # one line: lined up with its neighbours
        declared = Line(declares=(statement.name.text, _declared(statement)))
        declared.comment = lines[0].comment
        lines = [declared]
    return lines, unplaced


def _route_pieces(route: ast.Route) -> list[Piece]:
    branch = route.branch
    last = len(route.nodes) - 1
    pieces = [
        Piece(_step_text(n), n.span, "->" if i < last else "?" if branch else "", "chain")
        for i, n in enumerate(route.nodes)
    ]
    if branch is not None:
        for arm in branch.arms:
            pieces.append(Piece(format_expr(arm.condition), arm.condition.span, "->", "arm"))
            pieces.append(Piece(arm.target.text, arm.target.span, ":", "target"))
        pieces.append(Piece(branch.otherwise.text, branch.otherwise.span, "", "otherwise"))
    return pieces


def _step_text(step: ast.Name | ast.Parallel) -> str:
    """A step of a chain: a node's name, or parallel branches `[b -> b2, c]`."""
    if isinstance(step, ast.Name):
        return step.text
    return "[" + ", ".join(" -> ".join(n.text for n in chain) for chain in step.branches) + "]"


def _declaration_pieces(declaration: ast.NodeDecl) -> list[Piece]:
    """`node NAME = TOOL(`, each argument, `)` and the policies: where it may break."""
    head = f"node {declaration.name.text} = {_before_tool(declaration)}{declaration.tool.text}"
    policies = _format_policies(declaration.policies)
    if declaration.args is None:
        return [Piece(head + policies, declaration.span, "", "head")]
    pieces = [Piece(head, declaration.span, "(", "head")]
    pieces += [Piece(format_value(v.value), v.span, ",", "item") for v in declaration.positional]
    pieces += [
        Piece(f"{a.name.text} = {format_value(a.value.value)}", a.span, ",", "item")
        for a in declaration.args
    ]
    end = declaration.span
    closing = Span(end.end_line, end.end_column - 1, end.end_line, end.end_column)
    tail = declaration.policies[0].span if declaration.policies else closing
    return [*pieces, Piece(")" + policies, tail, "", "tail")]


def format_value(value: ast.Value) -> str:
    """A static value as a JSON literal (`true`, `null`, `[1, 2]`, `{"k": 1}`)."""
    return _json(value, separators=(", ", ": "))


def _json(value: ast.Value, separators: tuple[str, str] | None = None) -> str:
    # JSON escapes every control character but DEL, which the grammar refuses in strings too;
    # outside strings JSON text holds no DEL, so replacing them all is safe.
    text = json.dumps(value, ensure_ascii=False, separators=separators, allow_nan=False)
    return text.replace("\x7f", "\\u007f")


def format_expr(expr: ast.Expr) -> str:
    """A condition with the fewest parentheses that keep its meaning."""
    return _expr(expr)[0]


def _expr(expr: ast.Expr) -> tuple[str, int]:
    """The text of `expr` and the precedence of its outermost operator."""
    if isinstance(expr, ast.Literal):
        return _literal(expr), ATOM
    if isinstance(expr, ast.PathExpr):
        return _path(expr), ATOM
    if isinstance(expr, ast.ListExpr):
        return "[" + ", ".join(format_expr(item) for item in expr.items) + "]", ATOM
    if isinstance(expr, ast.Call):
        return f"{expr.function}(" + ", ".join(format_expr(a) for a in expr.args) + ")", ATOM
    if isinstance(expr, ast.Unary):
        level = LEVELS["not" if expr.op == "not" else "neg"]
        text, inner = _expr(expr.operand)
        if inner < level:
            text = f"({text})"
        return (f"not {text}" if expr.op == "not" else f"-{text}"), level
    level = LEVELS[expr.op]
    left, left_level = _expr(expr.left)
    right, right_level = _expr(expr.right)
    # Left-associative; comparisons do not chain, so they need parentheses on both sides.
    if left_level < level or (level == COMPARISON and left_level == level):
        left = f"({left})"
    if right_level <= level:
        right = f"({right})"
    return f"{left} {expr.op} {right}", level


def _literal(lit: ast.Literal) -> str:
    if lit.kind == "string":
        return _json(lit.value)
    if lit.kind == "float":
        text = repr(lit.value)
        return text if any(c in text for c in ".e") else text + ".0"
    return format_value(lit.value)


def _path(path: ast.PathExpr) -> str:
    """`a.b[0]`; a first key that is reserved or no name is written after `state`."""
    head = path.parts[0]
    if isinstance(head, str) and _is_name(head) and head not in RESERVED:
        out, keys = [head], path.parts[1:]
    else:
        out, keys = ["state"], path.parts
    for part in keys:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _is_name(part):
            out.append(f".{part}")
        else:
            out.append("[" + _json(part) + "]")
    return "".join(out)


def _is_name(text: str) -> bool:
    return text.isidentifier() and text.isascii()
