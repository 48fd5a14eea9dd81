"""A parsed module -> its nodes, each with the Python scope it runs in.

The code-review rules need to know whether `print`, `eval`, `list`, `logging` ... name the
builtin (or the module) or something the code bound itself.  This module walks the tree once,
iteratively (parsed trees can be deeper than Python's recursion limit allows to recurse), and
records the names each scope binds, following Python's own rules:

- a name bound anywhere in a function, lambda or comprehension is local to it for the whole
  scope (flow-insensitive, like Python); module scope is treated the same way, so a module-level
  `print = log.info` shadows `print` everywhere, even in lines that run before it;
- class bodies see their own names, but functions and comprehensions nested in a class do not;
- `global` sends a name to the module scope, `nonlocal` to an enclosing function;
- defaults, annotations and decorators run in the enclosing scope, and so does the first
  iterable of a comprehension; a walrus in a comprehension binds in the enclosing function.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

ScopeKind = Literal["module", "function", "class", "comprehension"]

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


@dataclass(eq=False)
class Scope:
    """One Python scope: the names it binds and the ones it declares `global`/`nonlocal`.

    `bindings` maps each bound name to True when every binding of it is `import name` (or
    `import name.sub`), so that the name is known to be that module.
    """

    kind: ScopeKind
    parent: Scope | None = None
    bindings: dict[str, bool] = field(default_factory=dict)
    declared_global: set[str] = field(default_factory=set)
    declared_nonlocal: set[str] = field(default_factory=set)

    def bind(self, name: str, *, imports_itself: bool = False) -> None:
        """Record that this scope binds `name` (`imports_itself`: by `import name`)."""
        self.bindings[name] = self.bindings.get(name, True) and imports_itself

    def resolve(self, name: str) -> Scope | None:
        """The scope whose binding `name` refers to here, or None for a builtin (unbound).

        Class scopes are only seen from their own body, as in Python.
        """
        scope: Scope | None = self
        own = True
        while scope is not None:
            if own or scope.kind != "class":
                if name in scope.declared_global and scope.kind != "module":
                    module = scope.module()
                    return module if name in module.bindings else None
                if name in scope.declared_nonlocal or name in scope.bindings:
                    return scope
            own = False
            scope = scope.parent
        return None

    def is_builtin(self, name: str) -> bool:
        """Whether `name`, used in this scope, refers to the builtin of that name."""
        return self.resolve(name) is None

    def module(self) -> Scope:
        """The module scope this scope is nested in."""
        scope = self
        while scope.parent is not None:
            scope = scope.parent
        return scope

    def function_scope(self) -> Scope:
        """The nearest scope that is not a comprehension: where a walrus binds."""
        scope = self
        while scope.kind == "comprehension" and scope.parent is not None:
            scope = scope.parent
        return scope


class Visit(NamedTuple):
    """A node of the tree, the scope its code runs in, and whether it is in an f-string."""

    node: ast.AST
    scope: Scope
    in_fstring: bool


_Pending = tuple[ast.AST, Scope, bool]


#: The nodes that open a scope, and its kind.
_OPENS: dict[type[ast.AST], ScopeKind] = {
    ast.FunctionDef: "function",
    ast.AsyncFunctionDef: "function",
    ast.Lambda: "function",
    ast.ClassDef: "class",
    **{comprehension: "comprehension" for comprehension in _COMPREHENSIONS},
}
#: The nodes that bind names in the scope they are in (see `_bind`).
_BINDS: frozenset[type[ast.AST]] = frozenset(
    {ast.Name, ast.NamedExpr, ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal}
    | {ast.ExceptHandler, ast.MatchAs, ast.MatchStar, ast.MatchMapping}
)


def walk_scopes(tree: ast.Module, wanted: Collection[type[ast.AST]]) -> Iterator[Visit]:
    """Every node of `tree` whose type is in `wanted`, once, with its scope.

    Scopes fill up as the walk goes on: resolve names only once the walk is finished (the
    last step moves names declared `global` in functions to the module scope).
    """
    module = Scope("module")
    scopes = [module]
    stack: list[_Pending] = [(statement, module, False) for statement in tree.body]
    pop, push = stack.pop, stack.extend
    while stack:
        node, scope, in_fstring = pop()
        kind = type(node)
        if kind in wanted:
            yield Visit(node, scope, in_fstring)
        opens = _OPENS.get(kind)
        if opens is not None:
            inner = Scope(opens, scope)
            scopes.append(inner)
            push((child, where, in_fstring) for child, where in _scoped(node, scope, inner))
        elif kind is ast.Name:  # the commonest node: no children worth a visit
            _bind(node, scope)
        else:
            if kind in _BINDS:
                _bind(node, scope)
            in_fstring = in_fstring or kind is ast.JoinedStr
            push((child, scope, in_fstring) for child in _plain_children(node))
    _settle_globals(scopes)


def _scoped(node: ast.AST, outer: Scope, inner: Scope) -> list[tuple[ast.AST, Scope]]:
    """The children of a scope-opening node, each with the scope it runs in."""
    outside: list[ast.AST] = []
    inside: list[ast.AST] = []
    # Type parameters (Python 3.12+) are walked in the enclosing scope: close enough here.
    outside += getattr(node, "type_params", [])
    if isinstance(node, (*_FUNCTIONS, ast.Lambda)):
        if not isinstance(node, ast.Lambda):
            outer.bind(node.name)
            outside += node.decorator_list
            outside += [node.returns] if node.returns is not None else []
        arguments = node.args
        params = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        params += [p for p in (arguments.vararg, arguments.kwarg) if p is not None]
        for param in params:
            inner.bind(param.arg)
            outside += [param.annotation] if param.annotation is not None else []
        outside += arguments.defaults
        outside += [d for d in arguments.kw_defaults if d is not None]
        inside += node.body if isinstance(node.body, list) else [node.body]
    elif isinstance(node, ast.ClassDef):
        outer.bind(node.name)
        outside += [*node.decorator_list, *node.bases, *node.keywords]
        inside += node.body
    elif isinstance(node, _COMPREHENSIONS):
        generators = node.generators
        outside.append(generators[0].iter)
        for index, generator in enumerate(generators):
            inside += [generator.target, *generator.ifs]
            inside += [generator.iter] if index else []
        inside += [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
    return [(child, outer) for child in outside] + [(child, inner) for child in inside]


def _bind(node: ast.AST, scope: Scope) -> None:
    """Record the names that `node` binds in `scope` (a node that opens a scope excluded)."""
    if isinstance(node, ast.Name):
        if not isinstance(node.ctx, ast.Load):
            scope.bind(node.id)
    elif isinstance(node, ast.NamedExpr):
        if isinstance(node.target, ast.Name):
            scope.function_scope().bind(node.target.id)
    elif isinstance(node, ast.Import):
        for alias in node.names:
            top = alias.name.partition(".")[0]
            name = alias.asname or top
            scope.bind(name, imports_itself=name == top and alias.asname in (None, alias.name))
    elif isinstance(node, ast.ImportFrom):
        for alias in node.names:
            if alias.name != "*":
                scope.bind(alias.asname or alias.name)
    elif isinstance(node, ast.Global):
        scope.declared_global.update(node.names)
    elif isinstance(node, ast.Nonlocal):
        scope.declared_nonlocal.update(node.names)
    elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)):
        if node.name is not None:
            scope.bind(node.name)
    elif isinstance(node, ast.MatchMapping) and node.rest is not None:
        scope.bind(node.rest)


def _plain_children(node: ast.AST) -> Iterable[ast.AST]:
    """The children of a node that opens no scope (a walrus target is bound, not walked)."""
    if isinstance(node, ast.NamedExpr):
        return (node.value,)
    return ast.iter_child_nodes(node)


def _settle_globals(scopes: list[Scope]) -> None:
    """Move names a function declares `global` and binds to the module scope they bind in."""
    module = scopes[0]
    for scope in scopes[1:]:
        for name in scope.declared_global & scope.bindings.keys():
            module.bind(name, imports_itself=scope.bindings.pop(name))
