"""The IR: JSON -> IR -> JSON round-trips exactly, compiling is deterministic, schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowc.compiler import check_ir, compile_ir, compile_source
from flowc.compiler.ir import Flow, json_schema
from flowc.compiler.tools import ToolSpec
from flowc.dsl import FlowError
from flowc.dsl.limits import MAX_NESTING

GOLDEN = Path(__file__).parent / "golden"
REVIEW = (GOLDEN / "OK_code_review.flow").read_text(encoding="utf-8")


def test_json_round_trip_is_exact(tools: dict[str, ToolSpec]) -> None:
    text = compile_source(REVIEW, tools=tools).ir.to_json()
    again = Flow.model_validate_json(text).to_json()
    assert again == text


def test_compiling_twice_gives_identical_bytes(tools: dict[str, ToolSpec]) -> None:
    first = compile_source(REVIEW, tools=tools).ir.to_json()
    second = compile_source(REVIEW, tools=tools).ir.to_json()
    assert first.encode() == second.encode()


def test_ir_content(tools: dict[str, ToolSpec]) -> None:
    ir = compile_source(REVIEW, tools=tools).ir
    assert ir.ir_version == 1
    assert ir.name == "code_review"
    assert ir.start == "analyze"
    assert ir.settings.max_steps == 60
    assert [(n.name, n.tool, n.args) for n in ir.nodes] == [
        ("analyze", "analyze_syntax", {}),
        ("style", "check_style", {}),
        ("score", "score_code", {}),
        ("refine", "refine_code", {"max_fixes": 10}),
    ]
    branch = ir.routes["score"]
    assert branch.kind == "branch"
    assert branch.otherwise == "end"
    (arm,) = branch.arms
    assert arm.target == "refine"
    data = arm.condition
    assert data == {
        "type": "binary",
        "op": "and",
        "left": {
            "type": "binary",
            "op": "<",
            "left": {"type": "path", "path": ["score"], "span": _span(12, 9, 12, 14)},
            "right": {"type": "literal", "value": 80, "span": _span(12, 17, 12, 19)},
            "span": _span(12, 9, 12, 19),
        },
        "right": {
            "type": "binary",
            "op": "<",
            "left": {
                "type": "call",
                "function": "default",
                "args": [
                    {"type": "path", "path": ["attempts"], "span": _span(12, 32, 12, 40)},
                    {"type": "literal", "value": 0, "span": _span(12, 42, 12, 43)},
                ],
                "span": _span(12, 24, 12, 44),
            },
            "right": {"type": "literal", "value": 3, "span": _span(12, 47, 12, 48)},
            "span": _span(12, 24, 12, 48),
        },
        "span": _span(12, 9, 12, 48),
    }
    assert ir.source_hash is not None and ir.source_hash.startswith("sha256:")


def _span(line: int, column: int, end_line: int, end_column: int) -> dict[str, int]:
    return {"line": line, "column": column, "end_line": end_line, "end_column": end_column}


def test_literal_types_survive_json() -> None:
    text = 'x ? a == 1 or a == 1.0 or a == true or a == null or a == "1" -> y : end\ny -> end\n'
    ir = compile_source(text).ir
    again = Flow.model_validate_json(ir.to_json())
    assert again == ir
    assert '"value": 1.0' in ir.to_json()
    assert '"value": true' in ir.to_json()


def test_ir_document_gets_the_same_checks(tools: dict[str, ToolSpec]) -> None:
    document = json.loads(compile_source(REVIEW, tools=tools).ir.to_json())
    assert compile_ir(document, tools=tools).ir.to_json() == json.dumps(document, indent=2)
    document["nodes"][0]["tool"] = "analyse_syntax"
    checked = check_ir(document, tools=tools)
    assert [(d.code, d.message, d.help) for d in checked.errors] == [
        ("E201", "unknown tool `analyse_syntax`", "did you mean `analyze_syntax`?")
    ]
    assert checked.errors[0].span.line == 5  # the node's span came with the document


def test_ir_document_with_a_trap_is_rejected() -> None:
    document = {
        "start": "a",
        "nodes": [{"name": "a", "tool": "t"}, {"name": "b", "tool": "t"}],
        "routes": {"a": {"kind": "goto", "target": "b"}, "b": {"kind": "goto", "target": "a"}},
    }
    with pytest.raises(FlowError) as caught:
        compile_ir(document)
    assert [d.code for d in caught.value.diagnostics] == ["E401"]
    assert "a -> b -> a" in caught.value.diagnostics[0].message


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "invalid IR"),
        ('{"start": "a", "nodes": []}', "invalid IR at `nodes`"),
        ('{"ir_version": 3, "start": "a", "nodes": [{"name": "a", "tool": "t"}]}', "ir_version"),
        ('{"start": "zz", "nodes": [{"name": "a", "tool": "t"}]}', "`zz` is not a node"),
        ("[" * 10_000 + "]" * 10_000, "invalid IR"),
    ],
)
def test_bad_ir_documents(document: str, message: str) -> None:
    checked = check_ir(document)
    assert checked.errors
    assert message in checked.errors[0].message


def test_ir_args_must_be_json() -> None:
    document = {"start": "a", "nodes": [{"name": "a", "tool": "t", "args": {"x": {1, 2}}}]}
    checked = check_ir(document)
    assert [d.message for d in checked.errors] == [
        "invalid IR: the arguments of node `a` are not JSON: Object of type set is not JSON "
        "serializable"
    ]


def test_schema_describes_the_ir() -> None:
    schema = json_schema()
    assert schema["title"] == "Flow"
    assert set(schema["required"]) == {"start", "nodes"}
    for name in ("BinaryExpr", "PathExpr", "Goto", "Branch", "Node", "Span"):
        assert name in schema["$defs"]


def _jsonb_order(value: object) -> object:
    # PostgreSQL's JSONB hands objects back with keys sorted by length, then bytes.
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: _jsonb_order(value[k]) for k in keys}
    if isinstance(value, list):
        return [_jsonb_order(item) for item in value]
    return value


def test_ir_bytes_survive_jsonb_key_order(tools: dict[str, ToolSpec]) -> None:
    text = compile_source(REVIEW, tools=tools).ir.to_json()
    reordered = _jsonb_order(json.loads(text))
    assert list(reordered["routes"]) != list(json.loads(text)["routes"])  # type: ignore[index]
    assert Flow.model_validate(reordered).to_json() == text


# `flowc compile` output, written from the IR reference: two-space indentation, the fields in
# schema order, spans 1-based with the end exclusive (a declared node's span is its whole
# declaration), and the `sha256sum` of the text as its hash.
TINY = "flow tiny\nset max_steps = 5\nnode a = t(n = 1)\na ? x -> end : a\n"
TINY_IR = """\
{
  "ir_version": 1,
  "name": "tiny",
  "start": "a",
  "settings": {
    "max_steps": 5
  },
  "nodes": [
    {
      "name": "a",
      "tool": "t",
      "args": {
        "n": 1
      },
      "span": {
        "line": 3,
        "column": 1,
        "end_line": 3,
        "end_column": 18
      }
    }
  ],
  "routes": {
    "a": {
      "kind": "branch",
      "arms": [
        {
          "condition": {
            "type": "path",
            "path": [
              "x"
            ],
            "span": {
              "line": 4,
              "column": 5,
              "end_line": 4,
              "end_column": 6
            }
          },
          "target": "end",
          "span": {
            "line": 4,
            "column": 5,
            "end_line": 4,
            "end_column": 13
          }
        }
      ],
      "otherwise": "a",
      "span": {
        "line": 4,
        "column": 3,
        "end_line": 4,
        "end_column": 17
      }
    }
  },
  "source_hash": "sha256:942d9db9180f4fa6e961ba608e4f9bbb7a65d2c14d9e425de3f52fa491e743ee"
}"""


def test_the_ir_of_a_small_flow_byte_for_byte() -> None:
    assert compile_source(TINY).ir.to_json() == TINY_IR


# ---------------------------------------------------------------- policies

POLICIES = (GOLDEN / "OK_policies.flow").read_text(encoding="utf-8")


def test_policies_and_their_settings_in_the_ir(tools: dict[str, ToolSpec]) -> None:
    ir = compile_source(POLICIES, tools=tools).ir
    assert (ir.settings.timeout, ir.settings.retries, ir.settings.backoff) == (30.0, 2, 0.5)
    fetch, check = ir.nodes
    assert fetch.policy is not None and check.policy is not None
    assert (fetch.policy.timeout, fetch.policy.retries, fetch.policy.backoff) == (5.0, 3, 0.25)
    assert (check.policy.timeout, check.policy.retries, check.policy.backoff) == (None, 0, None)
    document = json.loads(ir.to_json())
    assert document["settings"] == {"max_steps": 1000, "timeout": 30.0, "retries": 2,
                                    "backoff": 0.5}  # fmt: skip
    # Only what the declaration gives: the rest comes from the settings when it runs.
    assert document["nodes"][0]["policy"] == {"timeout": 5.0, "retries": 3, "backoff": 0.25}
    assert document["nodes"][1]["policy"] == {"retries": 0}
    assert Flow.model_validate_json(ir.to_json()).to_json() == ir.to_json()
    assert compile_ir(ir.to_json(), tools=tools).ir == ir


def test_a_flow_without_policies_has_the_ir_it_had_before_them() -> None:
    document = json.loads(
        compile_source("set max_steps = 9\nnode a = t(n = 1)\na -> end").ir.to_json()
    )
    assert document["settings"] == {"max_steps": 9}
    assert set(document["nodes"][0]) == {"name", "tool", "args", "span"}
    # A setting given its default value says nothing new, and is left out too.
    explicit = compile_source(
        "set retries = 0\nset backoff = 1\nnode a = t with retries = 1\na -> end"
    )
    assert json.loads(explicit.ir.to_json())["settings"] == {"max_steps": 1000}


def test_an_ir_document_without_policies_is_still_valid() -> None:
    old = {
        "ir_version": 1,
        "start": "a",
        "settings": {"max_steps": 5},
        "nodes": [{"name": "a", "tool": "t", "args": {}, "span": None}],
        "routes": {"a": {"kind": "goto", "target": "end"}},
    }
    ir = compile_ir(old).ir
    assert ir.nodes[0].policy is None
    assert (ir.settings.timeout, ir.settings.retries, ir.settings.backoff) == (None, 0, 1.0)
    assert compile_ir({**old, "settings": {}}).ir.settings.max_steps == 1000


def test_an_ir_document_with_policies_goes_through_the_same_program(
    tools: dict[str, ToolSpec],
) -> None:
    document = {
        "ir_version": 1,
        "start": "a",
        "settings": {"timeout": 10, "retries": 1},
        "nodes": [{"name": "a", "tool": "analyze", "policy": {"timeout": 0.5}}],
        "routes": {"a": {"kind": "goto", "target": "end"}},
    }
    checked = check_ir(document, tools=tools)
    assert checked.program is not None and not checked.diagnostics
    assert checked.program.nodes["a"].policy is not None
    assert checked.program.nodes["a"].policy.timeout == 0.5
    assert (checked.program.timeout, checked.program.retries) == (10.0, 1)


@pytest.mark.parametrize(
    ("policy", "where"),
    [
        ({"timeout": 0}, "nodes.0.policy.timeout"),
        ({"timeout": 604_801}, "nodes.0.policy.timeout"),
        ({"timeout": True}, "nodes.0.policy.timeout"),
        ({"retries": 101}, "nodes.0.policy.retries"),
        ({"retries": 1.0}, "nodes.0.policy.retries"),
        ({"backoff": -0.1}, "nodes.0.policy.backoff"),
        ({"backoff": "1"}, "nodes.0.policy.backoff"),
        ({"on_error": 5}, "nodes.0.policy.on_error"),
    ],
)
def test_bad_policies_in_an_ir_document(policy: dict[str, object], where: str) -> None:
    document = {"start": "a", "nodes": [{"name": "a", "tool": "t", "policy": policy}]}
    diagnostics = check_ir(document).diagnostics
    assert [(d.code, d.message.split(":")[0]) for d in diagnostics] == [
        ("E020", f"invalid IR at `{where}`")
    ]


def test_the_schema_describes_the_policies() -> None:
    schema = json_schema()
    assert "Policy" in schema["$defs"]
    settings = schema["$defs"]["Settings"]["properties"]
    assert {"max_steps", "timeout", "retries", "backoff"} <= set(settings)
    assert settings["retries"]["default"] == 0
    assert settings["backoff"]["default"] == 1.0


# ---------------------------------------------------------------- state declarations

TYPED = """\
flow typed
state code: str
state score: int = 0
state issues: list[dict[int]] = [{"line": 1}]
state reviewer: str? = null
analyze -> end
"""


def test_state_declarations_in_the_ir(tools: dict[str, ToolSpec]) -> None:
    ir = compile_source(TYPED, tools=tools).ir
    document = json.loads(ir.to_json())
    assert list(document) == [
        "ir_version", "name", "start", "settings", "state", "nodes", "routes", "source_hash"
    ]  # fmt: skip
    assert [
        {key: value for key, value in entry.items() if key != "span"} for entry in document["state"]
    ] == [
        {"name": "code", "type": "str", "default": None, "required": True},
        {"name": "score", "type": "int", "default": 0, "required": False},
        {"name": "issues", "type": "list[dict[int]]", "default": [{"line": 1}], "required": False},
        {"name": "reviewer", "type": "str?", "default": None, "required": False},
    ]
    assert document["state"][0]["span"] == _span(2, 1, 2, 16)


def test_state_declarations_round_trip(tools: dict[str, ToolSpec]) -> None:
    from flowc.compiler.ir import program_from_ir, to_ir

    compiled = compile_source(TYPED, tools=tools).ir
    text = compiled.to_json()
    assert Flow.model_validate_json(text).to_json() == text
    assert compile_ir(text, tools=tools).ir.to_json() == text
    program = program_from_ir(compiled)
    assert [(k.name, str(k.type), k.default, k.required) for k in program.state.values()] == [
        ("code", "str", None, True),
        ("score", "int", 0, False),
        ("issues", "list[dict[int]]", [{"line": 1}], False),
        ("reviewer", "str?", None, False),
    ]
    assert to_ir(program) == compiled


def test_a_flow_without_declarations_has_the_ir_it_had_before_them() -> None:
    assert compile_source(TINY).ir.to_json() == TINY_IR
    assert "state" not in json.loads(compile_source("a -> end").ir.to_json())
    old = {"start": "a", "nodes": [{"name": "a", "tool": "t"}]}
    assert compile_ir(old).ir.state == ()


def _typed(*keys: dict[str, object]) -> dict[str, object]:
    return {"start": "a", "state": list(keys), "nodes": [{"name": "a", "tool": "t"}]}


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


OPTIONAL = {"name": "x", "required": False}
BAD_KEYS = [
    ({"name": "x", "type": "strr"},
     ("E020", "invalid IR at `state.0.type`: unknown type `strr` in `strr`")),
    ({"name": "x", "type": "list[int"},
     ("E020", "invalid IR at `state.0.type`: a `]` is missing in `list[int`")),
    ({"name": "x", "type": "int[str]"},
     ("E020", "invalid IR at `state.0.type`: `int` takes no item type in `int[str]`")),
    ({"name": "x", "type": "int", "default": 1},
     ("E020", "invalid IR at `state.0`: a required key has no default (set `required` to "
              "false)")),
    ({**OPTIONAL, "type": "int", "default": "1"},
     ("E122", "the default of `x` does not fit its type `int`: expected int, got a string")),
    ({**OPTIONAL, "type": "list[int]", "default": [1, None]},
     ("E122", "the default of `x` does not fit its type `list[int]` at `/1`: expected int, "
              "got null")),
    ({**OPTIONAL, "type": "any", "default": {1, 2}},
     ("E020", "invalid IR: the default of state key `x` is not JSON: Object of type set is "
              "not JSON serializable")),
    ({**OPTIONAL, "type": "any", "default": _nested(MAX_NESTING)},
     ("E020", f"invalid IR at `state.0`: the default is nested more than {MAX_NESTING} "
              "levels deep")),
]  # fmt: skip


@pytest.mark.parametrize(("key", "expected"), BAD_KEYS)
def test_bad_state_declarations_in_an_ir_document(
    key: dict[str, object], expected: tuple[str, str]
) -> None:
    checked = check_ir(_typed(key))
    assert [(d.code, d.message) for d in checked.errors] == [expected]


def test_a_state_key_declared_twice_in_an_ir_document() -> None:
    key = {"name": "x", "type": "int", "default": 0, "required": False}
    checked = check_ir(_typed(key, {**key, "type": "str", "default": ""}))
    assert [(d.code, d.message) for d in checked.errors] == [
        ("E121", "state key `x` is declared twice")
    ]


def test_the_schema_describes_the_state_declarations() -> None:
    schema = json_schema()
    assert "StateKey" in schema["$defs"]
    assert set(schema["$defs"]["StateKey"]["properties"]) == {
        "name", "type", "default", "required", "span", "reducer"
    }  # fmt: skip
    assert schema["properties"]["state"]["default"] == []


# -- ir_version 2: error routes ------------------------------------------------------------

ERROR_ROUTE = (
    "node fetch = t with retries = 2, on_error = fallback\nfetch -> end\nfallback -> end\n"
)


def test_a_flow_with_an_error_route_is_ir_version_2_and_round_trips() -> None:
    ir = compile_source(ERROR_ROUTE).ir
    assert ir.ir_version == 2
    assert ir.nodes[0].policy is not None and ir.nodes[0].policy.on_error == "fallback"
    assert '"on_error": "fallback"' in ir.to_json()
    again = compile_ir(ir.to_json()).ir
    assert again == ir and again.to_json() == ir.to_json()
    # The checks read the error route back from the document: `fallback` stays reachable.
    assert not check_ir(ir.to_json()).diagnostics


def test_a_flow_without_v2_constructs_stays_ir_version_1() -> None:
    assert compile_source("node a = t with retries = 2\na -> end\n").ir.ir_version == 1


def test_an_ir_version_1_document_cannot_have_an_error_route() -> None:
    document = json.loads(compile_source(ERROR_ROUTE).ir.to_json())
    document["ir_version"] = 1
    (problem,) = check_ir(document).errors
    assert problem.code == "E020"
    assert "needs ir_version 2" in problem.message


@pytest.mark.parametrize(
    ("target", "code", "message"),
    [
        ("nowhere", "E111", "the error route of `a` leads to `nowhere`, which is not a node"),
        ("start", "E103", "nothing can lead into `start`"),
    ],
)
def test_an_error_route_in_a_document_leads_to_a_node(target: str, code: str, message: str) -> None:
    document = {
        "ir_version": 2,
        "start": "a",
        "nodes": [{"name": "a", "tool": "t", "policy": {"on_error": target}}],
    }
    assert [(d.code, d.message) for d in check_ir(document).errors] == [(code, message)]


# -- ir_version 2: parallel branches, reducers, max_parallel -------------------------------

FAN_OUT = (
    "set max_parallel = 3\nstate issues: list = [] by extend\na -> [b -> b2, c] -> d\nd -> end\n"
)


def test_parallel_branches_and_reducers_are_ir_version_2_and_round_trip() -> None:
    ir = compile_source(FAN_OUT).ir
    assert ir.ir_version == 2
    document = json.loads(ir.to_json())
    assert document["routes"]["a"]["kind"] == "parallel"
    assert document["routes"]["a"]["branches"] == [["b", "b2"], ["c"]]
    assert document["routes"]["a"]["join"] == "d"
    assert document["settings"]["max_parallel"] == 3
    assert document["state"][0]["reducer"] == "extend"
    again = compile_ir(ir.to_json()).ir
    assert again.to_json() == ir.to_json()
    program = check_ir(ir.to_json()).program
    assert program is not None and program.branch_of["b"].next == "b2"
    assert not check_ir(ir.to_json()).diagnostics


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            lambda d: d["settings"].pop("max_parallel") and d["state"][0].pop("reducer"),
            "the parallel branches after `a`",
        ),
        (lambda d: d["routes"].update(a={"kind": "goto", "target": "d"}), "`max_parallel`"),
    ],
)
def test_an_ir_version_1_document_has_no_v2_constructs(change: Any, said: str) -> None:
    document = json.loads(compile_source(FAN_OUT).ir.to_json())
    change(document)
    document["ir_version"] = 1
    (problem,) = check_ir(document).errors
    assert problem.code == "E020" and f"{said} needs ir_version 2" in problem.message


@pytest.mark.parametrize(
    ("branches", "code", "message"),
    [
        ([["b"], ["b"]], "E132", "node `b` is in more than one parallel branch"),
        ([["b"], ["end"]], "E132", "`end` cannot be in a parallel branch"),
        ([["b"], ["zz"]], "E111", "`a` leads to `zz`, which is not a node"),
    ],
)
def test_parallel_branches_in_a_document_are_checked(
    branches: list[list[str]], code: str, message: str
) -> None:
    document = {
        "ir_version": 2,
        "start": "a",
        "nodes": [{"name": n, "tool": "t"} for n in ("a", "b", "d")],
        "routes": {"a": {"kind": "parallel", "branches": branches, "join": "d"}},
    }
    assert (code, message) in [(d.code, d.message) for d in check_ir(document).errors]


def test_a_document_cannot_lead_into_a_branch() -> None:
    document = json.loads(compile_source("a -> [b, c] -> d\nd -> end\n").ir.to_json())
    document["routes"]["d"] = {"kind": "goto", "target": "c"}
    assert [d.code for d in check_ir(document).errors] == ["E134"]


def test_maps_and_waits_are_ir_version_2_and_round_trip() -> None:
    source = (
        "node fixes = for issue in issues: t(limit = 3)\n"
        'node ok = wait("approval", timeout = 60)\nfixes -> ok -> end\n'
    )
    ir = compile_source(source).ir
    document = json.loads(ir.to_json())
    assert document["ir_version"] == 2
    assert document["nodes"][0]["map"] == {"item": "issue", "over": "issues"}
    assert document["nodes"][1]["wait"] == {"name": "approval", "timeout": 60.0}
    assert document["nodes"][1]["args"] == {}
    assert compile_ir(ir.to_json()).ir.to_json() == ir.to_json()
    program = check_ir(ir.to_json()).program
    assert program is not None and program.nodes["ok"].wait is not None
    document["ir_version"] = 1
    assert "the map `fixes` needs ir_version 2" in check_ir(document).errors[0].message


def test_a_document_cannot_run_the_built_in_wait_as_a_tool() -> None:
    document = {"ir_version": 1, "start": "a", "nodes": [{"name": "a", "tool": "wait"}]}
    (problem,) = check_ir(document).errors
    assert problem.code == "E140" and "which is built in" in problem.message
