"""Hypothesis strategies that build Flow ASTs (not text) the grammar can express.

What the grammar cannot say, these never generate: names are never reserved words; numbers
in conditions are never negative (`-1` is unary minus applied to `1`); floats are finite;
strings hold no lone surrogates; a route without a branch has at least two nodes; a path's
first key is a string (any string: `state.end`, `state["a b"]` read the ones that are no
name).
"""

from __future__ import annotations

import math
import string

from hypothesis import strategies as st

from flowc.dsl import ast
from flowc.dsl.syntax import RESERVED

_FIRST = string.ascii_letters + "_"
_REST = _FIRST + string.digits

#: Any identifier the grammar's NAME matches, reserved words included.
identifiers: st.SearchStrategy[str] = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_FIRST),
    st.text(alphabet=_REST, max_size=8),
)

#: Names for nodes, tools, parameters, settings, functions and path heads.
names: st.SearchStrategy[str] = identifiers.filter(lambda name: name not in RESERVED)

#: Any text a string literal can hold: every code point but the lone surrogates.
texts: st.SearchStrategy[str] = st.text(
    alphabet=st.characters(exclude_categories=["Cs"]), max_size=12
)

finite_floats: st.SearchStrategy[float] = st.floats(allow_nan=False, allow_infinity=False)

#: JSON literals: what a setting or a tool argument can hold.
json_values: st.SearchStrategy[ast.Value] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | finite_floats
    | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)


def _name(text: str) -> ast.Name:
    return ast.Name(text)


node_refs: st.SearchStrategy[ast.Name] = st.builds(_name, names | st.sampled_from(["start", "end"]))

# ------------------------------------------------------------------- conditions

_non_negative_floats = finite_floats.filter(lambda x: math.copysign(1.0, x) > 0)

literals: st.SearchStrategy[ast.Expr] = st.one_of(
    st.builds(ast.Literal, st.just("int"), st.integers(min_value=0, max_value=10**30)),
    st.builds(ast.Literal, st.just("float"), _non_negative_floats),
    st.builds(ast.Literal, st.just("string"), texts),
    st.builds(ast.Literal, st.just("bool"), st.booleans()),
    st.builds(ast.Literal, st.just("null"), st.none()),
)

_path_parts: st.SearchStrategy[str | int] = st.one_of(
    identifiers,  # written `.key`, reserved words too
    texts,  # written `["key"]` unless it is an identifier
    st.integers(min_value=-(10**6), max_value=10**6),  # written `[0]`, `[-1]`
)

paths: st.SearchStrategy[ast.Expr] = st.builds(
    lambda head, rest: ast.PathExpr((head, *rest)),
    names | identifiers | texts,  # `state.end`, `state["a b"]` when it is no name
    st.lists(_path_parts, max_size=4),
)

_BINARY: list[ast.BinaryOp] = [
    "or", "and", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "+", "-", "*", "/", "%",
]  # fmt: skip
_UNARY: list[ast.UnaryOp] = ["not", "-"]


def _compound(children: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Expr]:
    return st.one_of(
        st.builds(ast.Binary, st.sampled_from(_BINARY), children, children),
        st.builds(ast.Unary, st.sampled_from(_UNARY), children),
        st.builds(lambda items: ast.ListExpr(tuple(items)), st.lists(children, max_size=3)),
        st.builds(
            lambda function, args: ast.Call(function, tuple(args)),
            names,
            st.lists(children, max_size=3),
        ),
    )


#: Condition trees of every shape: precedence and associativity are the formatter's job.
conditions: st.SearchStrategy[ast.Expr] = st.recursive(literals | paths, _compound, max_leaves=10)

# ------------------------------------------------------------------- statements

headers: st.SearchStrategy[ast.Statement] = st.builds(ast.Header, st.builds(_name, names))

settings: st.SearchStrategy[ast.Statement] = st.builds(
    lambda name, value: ast.Setting(ast.Name(name), ast.JsonValue(value)), names, json_values
)

#: Types as written: the language's own names and others (the compiler's concern), `[T]`, `?`.
type_refs: st.SearchStrategy[ast.TypeRef] = st.recursive(
    st.builds(
        lambda name, nullable: ast.TypeRef(ast.Name(name), None, nullable),
        st.sampled_from(["str", "int", "float", "bool", "any", "list", "dict"]) | names,
        st.booleans(),
    ),
    lambda items: st.builds(
        lambda name, item, nullable: ast.TypeRef(ast.Name(name), item, nullable),
        st.sampled_from(["list", "dict"]) | names,
        items,
        st.booleans(),
    ),
    max_leaves=3,
)

#: A declaration, with a reducer or none: a known one or any name (the compiler's concern).
state_decls: st.SearchStrategy[ast.Statement] = st.builds(
    lambda name, type_, default, reducer: ast.StateDecl(
        ast.Name(name),
        type_,
        None if default is None else ast.JsonValue(default[0]),
        reducer=None if reducer is None else ast.Name(reducer),
    ),
    names,
    type_refs,
    st.none() | st.tuples(json_values),
    st.none() | st.sampled_from(["append", "extend", "sum", "replace"]) | names,
)

arguments: st.SearchStrategy[ast.Argument] = st.builds(
    lambda name, value: ast.Argument(ast.Name(name), ast.JsonValue(value)), names, json_values
)

#: Policies under the names the language knows, and under others (the compiler's concern).
#: A value is a static value or a node's name (`on_error = fallback`), whatever the name.
policies: st.SearchStrategy[ast.Policy] = st.builds(
    lambda name, value: ast.Policy(ast.Name(name), value),
    st.sampled_from(ast.POLICY_NAMES) | names,
    json_values.map(ast.JsonValue) | node_refs,
)

#: `for ITEM in KEY:` before a tool, or nothing.
map_overs: st.SearchStrategy[ast.MapOver | None] = st.none() | st.builds(
    ast.MapOver, st.builds(_name, names), st.builds(_name, names)
)

#: `for ITEM in KEY:` before a tool, `flow` before a sub-flow's name (True), or nothing.
before_tools: st.SearchStrategy[ast.MapOver | bool | None] = map_overs | st.just(True)

node_decls: st.SearchStrategy[ast.Statement] = st.builds(
    lambda name, tool, args, given, positional, before: ast.NodeDecl(
        name,
        tool,
        args,
        policies=tuple(given),
        positional=tuple(positional) if args is not None else (),  # inside the parentheses
        over=before if isinstance(before, ast.MapOver) else None,
        subflow=before is True,
    ),
    st.builds(_name, names),
    st.builds(_name, names),
    st.none() | st.lists(arguments, max_size=3).map(tuple),
    st.lists(policies, max_size=4),
    st.lists(json_values.map(ast.JsonValue), max_size=1),
    before_tools,
)

arms: st.SearchStrategy[ast.Arm] = st.builds(ast.Arm, conditions, node_refs)

branches: st.SearchStrategy[ast.Branch] = st.builds(
    lambda arms, otherwise: ast.Branch(tuple(arms), otherwise),
    st.lists(arms, min_size=1, max_size=4),
    node_refs,
)

#: Parallel branches `[b -> b2, c]` (one branch is the compiler's concern: E131).
parallels: st.SearchStrategy[ast.Parallel] = st.builds(
    lambda chains: ast.Parallel(tuple(map(tuple, chains))),
    st.lists(st.lists(node_refs, min_size=1, max_size=3), min_size=1, max_size=3),
)

#: A step of a chain after its first node: mostly a node, sometimes parallel branches.
steps: st.SearchStrategy[ast.Name | ast.Parallel] = node_refs | parallels

chains: st.SearchStrategy[ast.Statement] = st.builds(
    lambda first, rest: ast.Route((first, *rest), None),
    node_refs,
    st.lists(steps, min_size=1, max_size=4),
)

branched_routes: st.SearchStrategy[ast.Statement] = st.builds(
    lambda first, rest, branch: ast.Route((first, *rest), branch),
    node_refs,
    st.lists(steps, max_size=2),
    branches,
)

statements: st.SearchStrategy[ast.Statement] = st.one_of(
    headers, settings, state_decls, node_decls, chains, branched_routes
)

flows: st.SearchStrategy[ast.Flow] = st.builds(
    lambda statements: ast.Flow(tuple(statements)), st.lists(statements, max_size=8)
)
