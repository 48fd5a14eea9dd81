"""Tool contracts from annotations: types of every form, reads, writes, and their enforcement."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, List, Literal, NewType, Optional, Union  # noqa: UP035

import pytest
from typing_extensions import NotRequired, Required, TypedDict

from flowc.compiler.tools import KeyContract
from flowc.compiler.types import ANY, BOOL, FLOAT, INT, NULL, STR, FlowType, dict_of, list_of
from flowc.runtime import Registry, RunResult, WorkflowEngine
from flowc.runtime.contracts import flow_type, keys_of
from flowc.runtime.registry import tool_spec
from flowc.runtime.tools.code_review import analyze_syntax, check_style, refine_code, score_code

UserId = NewType("UserId", str)


class Problem(TypedDict):
    message: str
    line: int | None


class Lines(TypedDict):
    first: int
    last: int


class Page(TypedDict):
    url: str
    tries: NotRequired[int]


class Options(TypedDict, total=False):
    url: Required[str]
    depth: int


class Fetched(TypedDict):
    status: int
    body: str | None
    problems: NotRequired[list[Problem]]


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (str, STR), (int, INT), (float, FLOAT), (bool, BOOL), (type(None), NULL), (Any, ANY),
        (list[int], list_of(INT)), (List[str], list_of(STR)),  # noqa: UP006
        (Sequence[bool], list_of(BOOL)),
        (list, list_of()), (tuple[int, ...], list_of(INT)), (tuple[int, str], list_of()),
        (dict[str, int], dict_of(INT)), (Mapping[str, list[str]], dict_of(list_of(STR))),
        (dict, dict_of()), (Problem, dict_of()), (Lines, dict_of(INT)),
        (Literal["a", "b"], FlowType("str", choices=("a", "b"))),
        (Literal[1, 2], FlowType("int", choices=(1, 2))),
        (Literal[True], FlowType("bool", choices=(True,))),
        (Literal["a", None], FlowType("str", nullable=True, choices=("a",))),
        (Literal[1, "a"], ANY),
        (Optional[str], STR.or_null()), (Union[int, float], FLOAT),  # noqa: UP007, UP045
        (int | None, INT.or_null()), (int | str, ANY), (list[int] | None, list_of(INT).or_null()),
        (Annotated[int, "meta", {}], INT), (UserId, STR), (NotRequired[bool], BOOL),
        (object, ANY), (set[int], list_of(INT)), (bytes, ANY), (Registry, ANY),
    ],
)  # fmt: skip
def test_python_annotations_as_flow_types(annotation: Any, expected: FlowType) -> None:
    assert flow_type(annotation) == expected


def test_typeddict_keys_say_what_is_required() -> None:
    assert keys_of(Page) == (KeyContract("url", STR), KeyContract("tries", INT, required=False))
    assert keys_of(Options) == (
        KeyContract("url", STR),
        KeyContract("depth", INT, required=False),
    )
    assert keys_of(Fetched) == (
        KeyContract("status", INT),
        KeyContract("body", STR.or_null()),
        KeyContract("problems", list_of(dict_of()), required=False),
    )


def test_a_typeddict_or_none_writes_nothing_for_certain() -> None:
    keys = keys_of(Fetched | None)
    assert keys is not None and not any(key.required for key in keys)


@pytest.mark.parametrize(
    "annotation", [dict[str, Any], Mapping[str, Any], dict, Any, int, Page | Fetched, None]
)
def test_anything_but_a_typeddict_declares_no_keys(annotation: Any) -> None:
    assert keys_of(annotation) is None


def fetch(state: Page, *, mode: Literal["a", "b"] = "a", limit: int | None = None) -> Fetched:
    return {"status": 200, "body": None}


def untyped(state, mode="a"):  # type: ignore[no-untyped-def]
    return None


def loose(state: dict[str, Any], *, level: int = 1) -> dict[str, Any]:
    return {}


def writes_nothing(state: Page) -> None:
    return None


async def fetch_later(state: Page) -> Fetched:
    return {"status": 200, "body": "ok"}


def test_a_spec_has_the_contract_of_the_annotations() -> None:
    spec = tool_spec(fetch, "fetch")
    assert spec.reads == keys_of(Page) and spec.writes == keys_of(Fetched)
    assert [(p.name, p.type) for p in spec.params] == [
        ("mode", FlowType("str", choices=("a", "b"))),
        ("limit", INT.or_null()),
    ]
    later = tool_spec(fetch_later, "later")  # an async tool's annotation is its result
    assert later.is_async and later.writes == keys_of(Fetched)


def test_no_annotations_mean_no_contract() -> None:
    spec = tool_spec(untyped, "untyped")
    assert (spec.reads, spec.writes, spec.params[0].type) == (None, None, None)
    spec = tool_spec(loose, "loose")
    assert (spec.reads, spec.writes, spec.params[0].type) == (None, None, INT)


def test_a_none_return_writes_nothing() -> None:
    assert tool_spec(writes_nothing, "quiet").writes == ()


def test_an_annotation_that_cannot_be_resolved_leaves_that_part_unchecked() -> None:
    def tool(state: Nowhere, *, level: int = 1) -> Fetched:  # type: ignore[name-defined]  # noqa: F821
        return {"status": 1, "body": None}

    spec = tool_spec(tool, "tool")  # registration does not fail
    assert spec.reads is None
    assert spec.writes == keys_of(Fetched)
    assert spec.params[0].type == INT


def test_a_typeddict_defined_in_a_function_is_unchecked_not_an_error() -> None:
    class Local(TypedDict):
        x: int

    def tool(state: Local) -> Local:
        return {"x": 1}

    spec = tool_spec(tool, "tool")  # the names are strings that only the function's body sees
    assert (spec.reads, spec.writes) == (None, None)


def test_the_code_review_tools_declare_what_they_read_and_write() -> None:
    shown = {
        function.__name__: (
            [(k.name, str(k.type), k.required) for k in spec.reads or ()],
            [(k.name, str(k.type), k.required) for k in spec.writes or ()],
        )
        for function in (analyze_syntax, check_style, score_code, refine_code)
        for spec in [tool_spec(function, function.__name__)]
    }
    code = [("code", "str", True)]
    assert shown == {
        "analyze_syntax": (
            code,
            [("syntax_ok", "bool", True), ("syntax_error", "dict?", True)],
        ),
        "check_style": (
            code,
            [
                ("issues", "list[dict]", True),
                ("issue_count", "int", True),
                ("style_ok", "bool", True),
                ("style_checked", "bool", True),
            ],
        ),
        "score_code": (code, [("score", "int", True), ("score_reason", "str", True)]),
        "refine_code": (
            [("code", "str", True), ("attempts", "int", False)],
            [
                ("code", "str", False),
                ("attempts", "int", True),
                ("fixes", "list[dict]", True),
                ("refine_note", "str", True),
            ],
        ),
    }
    assert tool_spec(refine_code, "refine").params[0].type == INT


# ------------------------------------------------------------------- enforcement


def run_with(tool: Any, source: str = "tool -> end") -> RunResult:
    registry = Registry()
    registry.add(tool, "tool")
    engine = WorkflowEngine(source, registry)
    return asyncio.run(engine.run(initial_state={"url": "x", "status": 1}))


def failure(result: RunResult) -> tuple[str, str]:
    assert result.status == "failed" and result.error is not None
    return result.error.code, result.error.message


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ({"status": "200", "body": None},
         "tool `tool` returned a `status` that does not fit its return annotation: "
         "expected int, got a string"),
        ({"status": True, "body": None},
         "tool `tool` returned a `status` that does not fit its return annotation: "
         "expected int, got a boolean (true)"),
        ({"status": 200, "body": None, "problems": [{"message": "m", "line": 1}, 3]},
         "tool `tool` returned a `problems` that does not fit its return annotation "
         "(at `problems/1`): expected dict, got an integer"),
        ({"body": None},
         "tool `tool` did not return `status`, which its return annotation says it always "
         "writes (mark it `NotRequired` if it may be left out)"),
        ({"status": 1, "body": None, "problems": None},
         "tool `tool` returned a `problems` that does not fit its return annotation: "
         "expected list[dict], got null"),
    ],
)  # fmt: skip
def test_a_return_that_breaks_the_contract_is_a_bad_return(returned: Any, message: str) -> None:
    def tool(state: dict[str, Any]) -> Fetched:  # reads unannotated: only writes are checked
        return returned  # type: ignore[no-any-return]

    result = run_with(tool)
    assert failure(result) == ("bad_return", message)
    assert result.state == {"url": "x", "status": 1}  # the delta was not taken


def test_an_unchanged_key_is_checked_too_and_a_kept_contract_runs() -> None:
    def tool(state: dict[str, Any]) -> Fetched:
        return {"status": 1, "body": None}  # `status` equals the state's: not in the delta

    result = run_with(tool)
    assert result.status == "succeeded"
    assert result.state == {"url": "x", "status": 1, "body": None}


def test_an_async_tool_and_a_tool_with_a_policy_are_held_to_it() -> None:
    async def tool(state: dict[str, Any]) -> Fetched:
        return {"status": 2.5, "body": None}  # type: ignore[typeddict-item]

    message = (
        "tool `tool` returned a `status` that does not fit its return annotation: "
        "expected int, got a number"
    )
    assert failure(run_with(tool)) == ("bad_return", message)
    source = "node t = tool with retries = 2\nt -> end"
    assert failure(run_with(tool, source)) == ("bad_return", message)  # never retried


class Counter:
    def __call__(self, state: Page, *, step: int = 1) -> Fetched:
        return {"status": step, "body": None}


def test_a_partial_and_a_callable_object_have_their_contracts() -> None:
    spec = tool_spec(functools.partial(fetch, limit=3), "partial")
    assert (spec.reads, spec.writes) == (keys_of(Page), keys_of(Fetched))
    assert [p.type for p in spec.params] == [FlowType("str", choices=("a", "b")), INT.or_null()]
    spec = tool_spec(Counter(), "counter")
    assert (spec.reads, spec.writes, spec.params[0].type) == (keys_of(Page), keys_of(Fetched), INT)
