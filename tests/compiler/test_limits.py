"""The compiler's limits on conditions: folding by the run's rules, size, nesting in the IR.

Constant folding uses the operator tables and limits of a run, so what would fail at run
time is a diagnostic where it is written (E303, E306), never an exception; a condition
over the size limit is E307; an IR document nested deeper than the DSL allows is refused
without recursion.  The API answers all of these with diagnostics, never a 500.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from flowc.compiler import check_ir, check_source, compile_source
from flowc.dsl import Span, ast
from flowc.dsl.limits import MAX_CONDITION_SIZE
from flowc.server.app import create_app
from tests.conftest import fake_tools
from tests.server.conftest import make_settings

Found = tuple[str, str, Span]
BIG = "9" * 4_300  # the longest integer literal there is
OUT_OF_RANGE = "gives an integer outside the signed 64-bit range that conditions compute in"


def errors(condition: str) -> list[Found]:
    checked = check_source(f"analyze ? {condition} -> end : end\n", tools=fake_tools())
    return [(d.code, d.message, d.span) for d in checked.errors]


def on_line_1(start: int, text: str) -> Span:
    """The span of `text` written from column `start` of line 1."""
    return Span(1, start, 1, start + len(text))


# ---------------------------------------------------------------- constant folding


@pytest.mark.parametrize(
    ("condition", "where", "code", "message"),
    [
        ("9223372036854775807 + 1 > 0", "9223372036854775807 + 1", "E306", f"`+` {OUT_OF_RANGE}"),
        ("-9223372036854775807 - 2 < 0", "-9223372036854775807 - 2", "E306",
         f"`-` {OUT_OF_RANGE}"),
        (f"{BIG} * {BIG} > 0", f"{BIG} * {BIG}", "E306", f"`*` {OUT_OF_RANGE}"),
        (f"x > {BIG} % 7 + {BIG}", f"{BIG} % 7 + {BIG}", "E306", f"`+` {OUT_OF_RANGE}"),
        (f"abs(-{BIG}) > 0", f"-{BIG}", "E306", f"`-` {OUT_OF_RANGE}"),
        (f"x > {BIG} / 3", f"{BIG} / 3", "E303", "`/` overflowed"),
        (f"x > 1.5 * {BIG}", f"1.5 * {BIG}", "E303", "`*` overflowed"),
        ("x > 7 % 0", "7 % 0", "E303", "division by zero"),
    ],
)  # fmt: skip
def test_folding_fails_where_the_run_would(
    condition: str, where: str, code: str, message: str
) -> None:
    start = 11 + condition.index(where)
    assert errors(condition) == [(code, message, on_line_1(start, where))]


def test_an_integer_at_the_limit_folds() -> None:
    checked = check_source("analyze ? 9223372036854775806 + 1 > 0 -> end : end\n")
    assert [d.code for d in checked.diagnostics] == ["W504"]  # always true, no error


def test_constant_strings_and_lists_stop_at_the_size_limit_first() -> None:
    # A constant string over its limit needs a text over 1 MiB, and a constant list over its
    # limit more than 10,000 literals: E307 comes first, and folding builds nothing large.
    half = "[" + ", ".join(["1"] * 50_000) + "]"
    assert [code for code, _, _ in errors(f"len({half} + {half} + [2]) > 0")] == ["E307"]


def test_the_compiler_never_raises_on_huge_constants() -> None:
    # The integers of the issue: the longest literal, used in every operator.
    for op in ("+", "-", "*", "/", "%", "<", "==", "in"):
        check_source(f"analyze ? {BIG} {op} {BIG} -> end : end\n")
        check_source(f"analyze ? [{BIG}] {op} [{BIG}] -> end : end\n")
        check_source(f"analyze ? -{BIG} {op} 0.5 -> end : end\n")


# ------------------------------------------------------------------------ size


def test_a_condition_over_the_size_limit_is_e307() -> None:
    items = ", ".join(str(i) for i in range(MAX_CONDITION_SIZE - 2))  # `x in [...]`: 3 more
    condition = f"x in [{items}]"
    assert errors(condition) == [
        (
            "E307",
            "the condition has more than 10,000 operators, calls, lists, paths and literals",
            on_line_1(11, condition),
        )
    ]
    fits = f"x in [{items.rsplit(', ', 1)[0]}]"
    assert errors(fits) == []


def test_an_ir_condition_over_the_size_limit_is_e307_too() -> None:
    items = [{"type": "literal", "value": i} for i in range(MAX_CONDITION_SIZE)]
    document = compile_source("analyze ? x in [1] -> end : end\n").ir.model_dump()
    document["routes"]["analyze"]["arms"][0]["condition"]["right"]["items"] = items
    assert [d.code for d in check_ir(document).errors] == ["E307"]


# ------------------------------------------------------------- duplicate arms


class CountingComparisons:
    """Counts the comparisons of conditions while the branch checks run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for kind in (ast.Binary, ast.Literal, ast.PathExpr):
            compare = kind.__eq__

            def counted(this: Any, other: Any, compare: Any = compare) -> Any:
                self.count += 1
                return compare(this, other)

            monkeypatch.setattr(kind, "__eq__", counted)


def arms(count: int) -> str:
    return " : ".join(f"x == {i} -> end" for i in range(count))


@pytest.mark.parametrize("count", [2_000, 8_000])
def test_duplicate_arms_are_found_without_comparing_every_pair(
    count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = f"analyze ? {arms(count)} : end\n"
    comparisons = CountingComparisons(monkeypatch)
    checked = check_source(source)
    assert not checked.diagnostics
    assert comparisons.count <= count  # a list would make count * (count - 1) / 2


def test_a_repeated_arm_is_still_found() -> None:
    source = f"analyze ? {arms(3_000)} : x == 1500 -> end : (x) == (1500) -> end : end\n"
    checked = check_source(source)
    assert [(d.code, d.message) for d in checked.diagnostics] == [
        ("W505", "this arm is never taken: an earlier arm tests `x == 1500`"),
        ("W505", "this arm is never taken: an earlier arm tests `x == 1500`"),
    ]
    # `1 == 1.0` is true, so `x == 1.0` is covered; `true == 1` is false, so `x == true` is not.
    checked = check_source("analyze ? x == 1 -> end : x == 1.0 -> end : x == true -> end : end")
    assert [(d.code, d.message) for d in checked.diagnostics] == [
        ("W505", "this arm is never taken: an earlier arm tests `x == 1`"),
    ]


# ---------------------------------------------------------------- IR nesting


def unary_chain(depth: int) -> dict[str, Any]:
    expr: dict[str, Any] = {"type": "path", "path": ["x"]}
    for _ in range(depth):
        expr = {"type": "unary", "op": "not", "operand": expr}
    return expr


def binary_chain(depth: int, op: str, *, right: bool = False, key: str = "x") -> dict[str, Any]:
    """`x op x op x ...` grouped to the left (a flat chain), or to the right."""
    expr: dict[str, Any] = {"type": "path", "path": [key]}
    leaf: dict[str, Any] = {"type": "path", "path": [key]}
    for _ in range(depth):
        pair = (leaf, expr) if right else (expr, leaf)
        expr = {"type": "binary", "op": op, "left": pair[0], "right": pair[1]}
    return expr


def document(condition: dict[str, Any], args: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "start": "a",
        "nodes": [{"name": "a", "tool": "analyze", "args": args or {}}],
        "routes": {
            "a": {
                "kind": "branch",
                "arms": [{"condition": condition, "target": "end"}],
                "otherwise": "end",
            }
        },
    }


NESTED = "invalid IR at `routes.a.branch.arms.0`: the condition is nested more than 100 levels deep"


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (unary_chain(200), NESTED),
        (unary_chain(100), NESTED),  # with `x`, 101 levels
        # `x or (x or (x ...))`: each level needs parentheses, as the formatter writes it.
        (binary_chain(51, "or", right=True), NESTED),
        (
            binary_chain(199, "or"),
            "invalid IR at `routes.a.branch.arms.0`: the condition is more than 200 levels deep "
            "as a tree: a chain of operators (`a or b or c`) is one level of nesting, but one "
            "level of the tree per operator",
        ),
        (binary_chain(100_000, "or"), None),  # deeper than Python's recursion limit
    ],
)
def test_an_ir_condition_nested_too_deep_is_refused(
    condition: dict[str, Any], message: str | None
) -> None:
    checked = check_ir(document(condition), tools=fake_tools())
    assert [d.code for d in checked.diagnostics] == ["E020"]
    if message is not None:
        assert checked.diagnostics[0].message == message


@pytest.mark.parametrize(
    "condition",
    [unary_chain(99), binary_chain(101, "or"), binary_chain(101, "and"), binary_chain(198, "or"),
     binary_chain(49, "and", right=True)],
)  # fmt: skip
def test_an_ir_condition_within_the_limits_is_accepted(condition: dict[str, Any]) -> None:
    for given in (document(condition), json.dumps(document(condition))):
        checked = check_ir(given, tools=fake_tools())
        assert not checked.errors, checked.errors


@pytest.mark.parametrize(("levels", "refused"), [(50, False), (51, True)])
def test_ir_nesting_is_counted_as_the_dsl_counts_the_text(levels: int, refused: bool) -> None:
    # `x or (x or (... (x or x)))`: each `or` and each pair of parentheses is a level, in
    # the text and in the IR, which the formatter writes with the same parentheses.
    text = "x or (" * (levels - 1) + "x or x" + ")" * (levels - 1)
    dsl = [d.code for d in check_source(f"analyze ? {text} -> end : end\n").errors]
    ir = [d.code for d in check_ir(document(binary_chain(levels, "or", right=True))).errors]
    assert (dsl, ir) == ((["E003"], ["E020"]) if refused else ([], []))
    # Parentheses that the formatter would drop count in the text only.
    redundant = f"analyze ? {'(' * 99}x{')' * 99} -> end : end\n"
    assert [d.code for d in check_source(redundant).errors] == []
    assert [d.code for d in check_source(redundant.replace("(x)", "((x))")).errors] == ["E003"]


def test_ir_arguments_nested_too_deep_are_refused() -> None:
    value: Any = 1
    for _ in range(99):  # 99 lists around a number: 100 levels, as in the DSL
        value = [value]
    assert not check_ir(document(unary_chain(1), {"x": value})).errors
    checked = check_ir(document(unary_chain(1), {"x": [value]}))
    assert [d.message for d in checked.errors] == [
        "invalid IR at `nodes.0`: the argument `x` is nested more than 100 levels deep"
    ]


def test_ir_json_text_that_is_not_json_still_gets_pydantic_s_message() -> None:
    (problem,) = check_ir("{").diagnostics
    assert problem.code == "E020"
    assert problem.message.startswith("invalid IR at `the document`: Invalid JSON: ")
    # Deeper than pydantic's parser reads, a document is read by `json`, but no more loosely.
    deep = json.dumps(document(binary_chain(198, "or")))
    assert not check_ir(deep).errors
    (problem,) = check_ir(deep.replace('"end"', '"\\udc00"', 1)).diagnostics
    assert problem.message.startswith("invalid IR at `the document`: Invalid JSON: ")
    # pydantic's parser takes NaN, and the document then fails as it always did.
    assert [d.message for d in check_ir('{"start": NaN}').diagnostics] == [
        "invalid IR at `start`: Input should be a valid string",
        "invalid IR at `nodes`: Field required",
    ]


# ------------------------------------------------------------------ the API


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The application on a fresh SQLite file, called in-process; app errors are raised."""
    application = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'flowc.db'}"))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://flowc.test") as http:
            yield http


BAD_SOURCES = {
    "overflow": (f"analyze_syntax ? {BIG} / 3 > 1 -> end : end", "E303", "`/` overflowed"),
    "product": (f"analyze_syntax ? {BIG} * {BIG} > 1 -> end : end", "E306", f"`*` {OUT_OF_RANGE}"),
    "int64": ("analyze_syntax ? 9223372036854775807 + 1 > 1 -> end : end", "E306",
              f"`+` {OUT_OF_RANGE}"),
    "parentheses": ("analyze_syntax ? " + "(" * 10_000 + "x" + ")" * 10_000 + " -> end : end",
                    "E003", "nested more than 100 levels deep"),
}  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize("case", BAD_SOURCES, ids=list(BAD_SOURCES))
async def test_the_api_answers_bad_constants_and_nesting_with_diagnostics(
    client: httpx.AsyncClient, case: str
) -> None:
    source, code, message = BAD_SOURCES[case]
    checked = await client.post("/graph/check", json={"source": source})
    assert checked.status_code == 200
    assert [(d["code"], d["message"]) for d in checked.json()["diagnostics"]] == [(code, message)]
    assert checked.json()["diagnostics"][0]["line"] == 1
    created = await client.post("/graph/create", json={"source": source})
    assert created.status_code == 422
    found = created.json()["detail"]["diagnostics"]
    assert [(d["code"], d["message"]) for d in found] == [(code, message)]


@pytest.mark.asyncio
async def test_the_api_refuses_a_deep_ir_and_takes_a_flat_chain(
    client: httpx.AsyncClient,
) -> None:
    deep = document(unary_chain(200))
    deep["nodes"][0]["tool"] = "analyze_syntax"
    for path in ("/graph/check", "/graph/create"):
        answer = await client.post(path, json={"ir": deep})
        assert answer.status_code in (200, 422)
        body = answer.json()
        found = body["diagnostics"] if path == "/graph/check" else body["detail"]["diagnostics"]
        assert [(d["code"], d["message"]) for d in found] == [("E020", NESTED)]
    flat = document(binary_chain(101, "or", key="syntax_ok"))  # a key the tool writes
    flat["nodes"][0]["tool"] = "analyze_syntax"
    created = await client.post("/graph/create", json={"ir": flat})
    assert created.status_code == 201, created.text
    read = await client.get(f"/graph/{created.json()['graph_id']}")
    assert read.status_code == 200
