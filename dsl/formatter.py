"""AST -> canonical Flow text: one statement per line, single spaces, minimal parentheses."""

from __future__ import annotations

import json

from flowc.dsl import ast
from flowc.dsl.comments import Comment

#: A branch longer than this is written one arm per line.
LINE_WIDTH = 88

# Binding strength of each operator; higher binds tighter.
_PRECEDENCE: dict[str, int] = {
    "or": 1, "and": 2, "not": 3,
    "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "in": 4, "not in": 4,
    "+": 5, "-": 5, "*": 6, "/": 6, "%": 6, "neg": 7,
}  # fmt: skip
_ATOM = 8
_COMPARISON = 4


def format(flow: ast.Flow) -> str:
    """The canonical text of a flow; `parse(format(f)) == f` and formatting is idempotent.

    Comments come back where they were: a comment on its own line stays above the
    statement that follows it, a comment after code ends the statement's last line.  One
    blank line is kept where the source had blank lines between statements.
    """
    lines: list[str] = []
    comments = list(flow.comments)
    previous: ast.Statement | None = None
    for statement in flow.statements:
        span = statement.span
        above = [c for c in comments if c.line < span.line]
        inside = [c for c in comments if span.line <= c.line <= span.end_line]
        comments = comments[len(above) + len(inside) :]
        if previous is not None and _blank_line_between(previous, statement, above):
            lines.append("")
        lines.extend(comment.text for comment in above)
        lines.extend(comment.text for comment in inside[1:])  # a second one goes above
        body = format_statement(statement)
        if inside:
            body[-1] = f"{body[-1]}  {inside[0].text}"
        lines.extend(body)
        previous = statement
    if comments:
        if previous is not None and comments[0].line > previous.span.end_line + 1:
            lines.append("")
        lines.extend(comment.text for comment in comments)
    return "\n".join(lines) + "\n" if lines else ""


def _blank_line_between(
    previous: ast.Statement, statement: ast.Statement, comments: list[Comment]
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
    if isinstance(statement, ast.NodeDecl):
        return [f"node {statement.name.text} = {statement.tool.text}{_format_args(statement.args)}"]
    return _format_route(statement)


def _format_args(args: tuple[ast.Argument, ...] | None) -> str:
    if args is None:
        return ""
    inner = ", ".join(f"{a.name.text} = {format_value(a.value.value)}" for a in args)
    return f"({inner})"


def _format_route(route: ast.Route) -> list[str]:
    chain = " -> ".join(name.text for name in route.nodes)
    if route.branch is None:
        return [chain]
    arms = [f"{format_expr(arm.condition)} -> {arm.target.text}" for arm in route.branch.arms]
    arms.append(route.branch.otherwise.text)
    one_line = f"{chain} ? {' : '.join(arms)}"
    if len(one_line) <= LINE_WIDTH or len(arms) == 2:
        return [one_line]
    indent = " " * (len(chain) + 3)
    lines = [f"{chain} ? {arms[0]} :"]
    lines += [f"{indent}{arm} :" for arm in arms[1:-1]]
    lines.append(indent + arms[-1])
    return lines


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
        return _literal(expr), _ATOM
    if isinstance(expr, ast.PathExpr):
        return _path(expr), _ATOM
    if isinstance(expr, ast.ListExpr):
        return "[" + ", ".join(format_expr(item) for item in expr.items) + "]", _ATOM
    if isinstance(expr, ast.Call):
        return f"{expr.function}(" + ", ".join(format_expr(a) for a in expr.args) + ")", _ATOM
    if isinstance(expr, ast.Unary):
        level = _PRECEDENCE["not" if expr.op == "not" else "neg"]
        text, inner = _expr(expr.operand)
        if inner < level:
            text = f"({text})"
        return (f"not {text}" if expr.op == "not" else f"-{text}"), level
    level = _PRECEDENCE[expr.op]
    left, left_level = _expr(expr.left)
    right, right_level = _expr(expr.right)
    # Left-associative; comparisons do not chain, so they need parentheses on both sides.
    if left_level < level or (level == _COMPARISON and left_level == level):
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
    out = [str(path.parts[0])]
    for part in path.parts[1:]:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier() and part.isascii():
            out.append(f".{part}")
        else:
            out.append("[" + _json(part) + "]")
    return "".join(out)
