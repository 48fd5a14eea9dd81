"""A parsed module -> findings: the rule catalogue of the code-review tools, and its checks.

Each check takes one node (with its scope, see `code_review_scopes`) and yields findings;
a finding that refine can rewrite carries the exact text edits that fix it.  The catalogue
is documented, with examples, in `docs/rules.md`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypedDict

from flowc.runtime.tools.code_review_fixes import (
    Edit,
    SourceText,
    import_line,
    insert_after_paren,
    replace_keyword,
    replace_node,
    replace_operator,
)
from flowc.runtime.tools.code_review_scopes import Visit, walk_scopes


@dataclass(frozen=True, slots=True)
class Rule:
    """One entry of the catalogue: a stable id, what it finds, its cost, refine's rewrite."""

    id: str
    name: str
    summary: str
    points: int
    fix: str | None = None


#: The score of code that does not parse: nothing can be checked, so nothing is trusted.
SYNTAX_ERROR_SCORE = 0

_PRINT_FIX = '`print(a, b)` -> `logging.info("%s %s", a, b)`'
_NONE_FIX = "`== None` -> `is None`, `!= None` -> `is not None`"
_IS_FIX = "`is` -> `==`, `is not` -> `!=`"
_RAISE_FIX = "`NotImplemented` -> `NotImplementedError`"

#: The catalogue, by rule id.  Ids are stable: a retired rule's id is never reused.
RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule("FLW000", "syntax-error", "the code does not parse", 100),
        Rule("FLW001", "print-call", "call of the builtin `print`", 10, _PRINT_FIX),
        Rule("FLW002", "bare-except", "bare `except:`", 10, "`except:` -> `except Exception:`"),
        Rule("FLW003", "eval-exec", "call of the builtin `eval` or `exec`", 10),
        Rule("FLW004", "wildcard-import", "`from module import *`", 10),
        Rule("FLW005", "mutable-default", "list, dict or set as a default argument", 10),
        Rule("FLW006", "compare-none", "`== None` or `!= None`", 10, _NONE_FIX),
        Rule("FLW007", "assert-tuple", "`assert` on a non-empty tuple (always true)", 10),
        Rule("FLW008", "is-literal", "`is` / `is not` with a literal", 10, _IS_FIX),
        Rule("FLW009", "raise-notimplemented", "`raise NotImplemented`", 10, _RAISE_FIX),
    )
}


class Issue(TypedDict):
    """A finding as the JSON object the tools put in the state (`check_style`'s `issues`)."""

    rule: str
    message: str
    line: int
    column: int
    fixable: bool


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found: its rule, a message, where (1-based line and column), its fix."""

    rule: str
    message: str
    line: int
    column: int
    edits: tuple[Edit, ...] = ()

    @property
    def fixable(self) -> bool:
        """Whether refine can rewrite this finding away."""
        return bool(self.edits)

    def as_issue(self) -> Issue:
        """The finding as the JSON object the tools put in the state."""
        return {
            "rule": self.rule,
            "message": self.message,
            "line": self.line,
            "column": self.column,
            "fixable": self.fixable,
        }


def find_problems(tree: ast.Module, text: str) -> list[Finding]:
    """Every finding of the catalogue in `tree` (parsed from `text`), in source order."""
    review = _Review(tree, SourceText(text))
    # Names resolve only once every binding is known, so checks run after the walk.
    visits = list(walk_scopes(tree, _CHECKS))
    findings = [found for visit in visits for found in _CHECKS[type(visit.node)](visit, review)]
    return sorted(findings, key=lambda found: (found.line, found.column, found.rule))


@dataclass
class _Review:
    """What the checks share: the tree, its text, and where `import logging` would go."""

    tree: ast.Module
    source: SourceText
    _import_edit: tuple[Edit | None] | None = field(default=None, init=False)
    _imported_at: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # A print below a module-level `import logging` statement needs no new import.
        lines = [stmt.end_lineno or 0 for stmt in self.tree.body if _imports_logging(stmt)]
        self._imported_at = min(lines, default=None)

    def finding(self, rule: str, message: str, node: ast.AST, *edits: Edit | None) -> Finding:
        """A finding at `node`; fixable when every edit could be placed."""
        line, col = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
        placed = tuple(edit for edit in edits if edit is not None)
        if len(placed) != len(edits):
            placed = ()
        return Finding(rule, message, line, self.source.column(line, col), placed)

    def logging_import(self, visit: Visit, line: int) -> tuple[Edit, ...] | None:
        """The edits that make `logging` the logging module at `line`; None if they can't."""
        owner = visit.scope.resolve("logging")
        if owner is not None and not (owner.kind == "module" and owner.bindings["logging"]):
            return None
        if self._imported_at is not None and self._imported_at < line:
            return ()
        if self._import_edit is None:
            self._import_edit = (import_line(self.tree, self.source, b"import logging"),)
        edit = self._import_edit[0]
        return None if edit is None else (edit,)


def _imports_logging(stmt: ast.stmt) -> bool:
    """Whether `stmt` is `import logging` (or `import logging.sub`) binding `logging`."""
    return isinstance(stmt, ast.Import) and any(
        alias.name.partition(".")[0] == "logging" and alias.asname in (None, alias.name)
        for alias in stmt.names
    )


def _check_call(visit: Visit, review: _Review) -> Iterator[Finding]:
    """FLW001 `print(...)`, FLW003 `eval(...)`/`exec(...)`: calls of the real builtins."""
    call = visit.node
    assert isinstance(call, ast.Call)
    name = call.func.id if isinstance(call.func, ast.Name) else None
    if name == "print" and visit.scope.is_builtin(name):
        yield review.finding(
            "FLW001", "`print(...)` call: use `logging` instead", call, *_print_fix(visit, review)
        )
    elif name in ("eval", "exec") and visit.scope.is_builtin(name):
        yield review.finding("FLW003", f"`{name}(...)` runs arbitrary code", call)


def _print_fix(visit: Visit, review: _Review) -> tuple[Edit | None, ...]:
    """Edits turning `print(a, b)` into `logging.info("%s %s", a, b)`; () if there are none.

    Keyword arguments (`sep`, `end`, `file`), `*args` and calls inside f-strings are left
    alone: no rewrite of those keeps both the meaning and the text around them.
    """
    call = visit.node
    assert isinstance(call, ast.Call)
    starred = any(isinstance(arg, ast.Starred) for arg in call.args)
    if visit.in_fstring or call.keywords or starred:
        return ()
    imports = review.logging_import(visit, call.lineno)
    if imports is None:
        return ()
    source, count = review.source, len(call.args)
    edits: list[Edit | None] = [replace_node(source, call.func, b"print", b"logging.info")]
    if count != 1:
        template = b'""' if count == 0 else b'"' + b" ".join([b"%s"] * count) + b'", '
        edits.append(insert_after_paren(source, call.func, template))
    return (*edits, *imports)


def _check_except(visit: Visit, review: _Review) -> Iterator[Finding]:
    """FLW002: a bare `except:`, rewritten `except Exception:`."""
    handler = visit.node
    assert isinstance(handler, ast.ExceptHandler)
    if handler.type is None:
        fix: tuple[Edit | None, ...] = ()
        if visit.scope.is_builtin("Exception"):
            fix = (replace_keyword(review.source, handler, b"except", b"except Exception"),)
        message = "bare `except:` also catches `KeyboardInterrupt`: catch `Exception`"
        yield review.finding("FLW002", message, handler, *fix)


def _check_import_from(visit: Visit, review: _Review) -> Iterator[Finding]:
    """FLW004: `from module import *`."""
    node = visit.node
    assert isinstance(node, ast.ImportFrom)
    if any(alias.name == "*" for alias in node.names):
        module = "." * node.level + (node.module or "")
        message = f"wildcard import `from {module} import *`: import the names you use"
        yield review.finding("FLW004", message, node)


def _check_function(visit: Visit, review: _Review) -> Iterator[Finding]:
    """FLW005: a list, dict or set default argument (and the decorators' findings)."""
    function = visit.node
    assert isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args]
    pairs = list(
        zip(
            positional[len(positional) - len(arguments.defaults) :], arguments.defaults, strict=True
        )
    )
    pairs += [
        (arg, d) for arg, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True) if d
    ]
    for arg, default in pairs:
        if _is_mutable(default, visit):
            message = f"mutable default `{arg.arg}=...` is shared by every call: default to None"
            yield review.finding("FLW005", message, default)
    if not isinstance(function, ast.Lambda):
        yield from _check_decorators(visit, review)


def _check_decorators(visit: Visit, review: _Review) -> Iterator[Finding]:
    """FLW001: `@print` as a decorator, which calls `print` with the function or class."""
    decorated = visit.node
    assert isinstance(decorated, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    for decorator in decorated.decorator_list:
        is_print = isinstance(decorator, ast.Name) and decorator.id == "print"
        if is_print and visit.scope.is_builtin("print"):
            yield review.finding("FLW001", "`@print` calls `print`", decorator)


_MUTABLE_DISPLAYS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


def _is_mutable(default: ast.expr, visit: Visit) -> bool:
    """Whether a default is a list/dict/set display or a call of the builtin list/dict/set."""
    if isinstance(default, _MUTABLE_DISPLAYS):
        return True
    if isinstance(default, ast.Call) and isinstance(default.func, ast.Name):
        name = default.func.id
        return name in ("list", "dict", "set") and visit.scope.is_builtin(name)
    return False


_LITERALS = (ast.JoinedStr, ast.List, ast.Tuple, ast.Dict, ast.Set, *_MUTABLE_DISPLAYS)


@dataclass(frozen=True, slots=True)
class _Swap:
    """A comparison operator: how it is written, how to find it, what refine puts instead."""

    symbol: str
    pattern: re.Pattern[bytes]
    replacement: str


_SWAPS: dict[type[ast.cmpop], _Swap] = {
    ast.Eq: _Swap("==", re.compile(rb"=="), "is"),
    ast.NotEq: _Swap("!=", re.compile(rb"!="), "is not"),
    ast.Is: _Swap("is", re.compile(rb"is"), "=="),
    ast.IsNot: _Swap("is not", re.compile(rb"is(?:\s|\\)+not"), "!="),
}


def _is_literal(*nodes: ast.expr) -> bool:
    """Whether one of `nodes` is a literal that `is` should not compare: not a singleton."""
    for node in nodes:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            node = node.operand  # -1 is a literal too
        if isinstance(node, ast.Constant):
            if not (node.value is None or node.value is ... or isinstance(node.value, bool)):
                return True
        elif isinstance(node, _LITERALS):
            return True
    return False


def _is_none(node: ast.expr) -> bool:
    """Whether `node` is the constant None."""
    return isinstance(node, ast.Constant) and node.value is None


def _check_compare(visit: Visit, review: _Review) -> Iterator[Finding]:
    """FLW006: `== None` / `!= None`; FLW008: `is` / `is not` with a literal."""
    compare = visit.node
    assert isinstance(compare, ast.Compare)
    operands = [compare.left, *compare.comparators]
    for left, op, right in zip(operands, compare.ops, operands[1:], strict=False):
        # `"a" is None` is no FLW008: it is what the FLW006 rewrite of `"a" == None` gives.
        with_none = _is_none(left) or _is_none(right)
        if isinstance(op, (ast.Eq, ast.NotEq)) and with_none:
            swap = _SWAPS[type(op)]
            rule, message = "FLW006", f"`{swap.symbol} None`: use `{swap.replacement} None`"
        elif isinstance(op, (ast.Is, ast.IsNot)) and not with_none and _is_literal(left, right):
            swap = _SWAPS[type(op)]
            rule = "FLW008"
            message = f"`{swap.symbol}` with a literal compares identity: use `{swap.replacement}`"
        else:
            continue
        replacement = swap.replacement.encode()
        fix: tuple[Edit | None, ...] = ()
        if not visit.in_fstring:
            fix = (replace_operator(review.source, left, right, swap.pattern, replacement),)
        yield review.finding(rule, message, left, *fix)


def _check_assert(visit: Visit, review: _Review) -> Iterator[Finding]:
    """FLW007: `assert (condition, message)`, which is always true."""
    node = visit.node
    assert isinstance(node, ast.Assert)
    if isinstance(node.test, ast.Tuple) and node.test.elts:
        message = "`assert` on a tuple is always true: write `assert condition, message`"
        yield review.finding("FLW007", message, node)


def _check_raise(visit: Visit, review: _Review) -> Iterator[Finding]:
    """FLW009: `raise NotImplemented` (or `NotImplemented(...)`): a constant, not an error."""
    node = visit.node
    assert isinstance(node, ast.Raise)
    raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    if not (isinstance(raised, ast.Name) and raised.id == "NotImplemented"):
        return
    if visit.scope.is_builtin("NotImplemented"):
        fix: tuple[Edit | None, ...] = ()
        if visit.scope.is_builtin("NotImplementedError"):
            fix = (replace_node(review.source, raised, b"NotImplemented", b"NotImplementedError"),)
        message = "`raise NotImplemented` raises a TypeError: raise `NotImplementedError`"
        yield review.finding("FLW009", message, raised, *fix)


_Check = Callable[[Visit, _Review], Iterator[Finding]]
_CHECKS: dict[type[ast.AST], _Check] = {
    ast.Call: _check_call,
    ast.ExceptHandler: _check_except,
    ast.ImportFrom: _check_import_from,
    ast.FunctionDef: _check_function,
    ast.AsyncFunctionDef: _check_function,
    ast.Lambda: _check_function,
    ast.ClassDef: _check_decorators,
    ast.Compare: _check_compare,
    ast.Assert: _check_assert,
    ast.Raise: _check_raise,
}
