"""The code-review tool pack: registration, the state it reads and writes, syntax, scores."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
from typing import Any

import pytest

from flowc.runtime import REGISTRY, WorkflowEngine
from flowc.runtime.tools import load_builtin_packs
from flowc.runtime.tools.code_review import (
    MAX_CODE_BYTES,
    MAX_REPORTED_ISSUES,
    CodeTooLarge,
    RefineState,
    analyze_syntax,
    check_style,
    refine_code,
    score_code,
)
from flowc.runtime.tools.code_review_rules import RULES
from tests.runtime.code_review_support import found, sample

TOOLS = [analyze_syntax, check_style, score_code, refine_code]


def run(tool_name: str, state: dict[str, Any]) -> dict[str, Any]:
    """Run a registered tool the way the interpreter does: look it up, call, merge."""
    tool = REGISTRY.get(tool_name)
    assert tool is not None
    update: dict[str, Any] = tool.function(state)
    return {**state, **update}


# --- registration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("long_name", "short_name"),
    [
        ("analyze_syntax", "analyze"),
        ("check_style", "style"),
        ("score_code", "score"),
        ("refine_code", "refine"),
    ],
)
def test_each_tool_is_registered_under_both_names(long_name: str, short_name: str) -> None:
    load_builtin_packs()
    long_tool, short_tool = REGISTRY.get(long_name), REGISTRY.get(short_name)
    assert long_tool is not None and short_tool is not None
    assert long_tool.function is short_tool.function
    assert long_tool.spec.doc and long_tool.spec.state_param == "state"


def test_refine_declares_max_fixes_with_its_default() -> None:
    load_builtin_packs()
    tool = REGISTRY.get("refine")
    assert tool is not None
    [param] = tool.spec.params
    assert (param.name, param.required, param.default, param.annotation) == (
        "max_fixes",
        False,
        "10",
        "int",
    )
    assert [p.name for p in REGISTRY.specs()["analyze"].params] == []


def test_the_one_liner_loop_by_hand_reaches_a_passing_score() -> None:
    # analyze -> style -> score; score ? score<80 -> refine : end, with refine -> analyze
    state: dict[str, Any] = {"code": sample("prints.py")}
    scores = []
    while True:
        for name in ("analyze", "style", "score"):
            state = run(name, state)
        scores.append(state["score"])
        if state["score"] >= 80 or state.get("attempts", 0) >= 3:
            break
        state = run("refine", state)
    assert scores == [30, 90]
    assert state["attempts"] == 1 and state["syntax_ok"] is True
    assert [issue["rule"] for issue in state["issues"]] == ["FLW001"]


# --- the state ----------------------------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS)
def test_tools_never_change_the_state_they_are_given(tool: Any) -> None:
    state = {"code": "print(x == None)\n", "attempts": 2, "issues": ["old"], "nested": {"a": [1]}}
    before = copy.deepcopy(state)
    update = tool(state)
    assert state == before
    assert isinstance(update, dict) and update is not state


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({}, "the state has no `code`, not Python source text"),
        ({"code": None}, "the state has no `code`, not Python source text"),
        ({"code": 42}, "`code` is int, not Python source text"),
        ({"code": b"print(1)"}, "`code` is bytes, not Python source text"),
        ({"code": ["x = 1"]}, "`code` is list, not Python source text"),
    ],
)
def test_missing_or_non_string_code_is_reported_like_a_syntax_error(
    state: Any, message: str
) -> None:
    assert analyze_syntax(state) == {
        "syntax_ok": False,
        "syntax_error": {"message": message, "line": None, "column": None},
    }
    style = check_style(state)
    assert style["style_checked"] is False and style["style_ok"] is False
    assert [issue["rule"] for issue in style["issues"]] == ["FLW000"]
    assert score_code(state) == {
        "score": 0,
        "score_reason": f"the code does not parse ({message}): score 0",
    }
    assert refine_code(state) == {
        "attempts": 1,
        "fixes": [],
        "refine_note": f"nothing changed: the code does not parse ({message})",
    }


# --- analyze_syntax -----------------------------------------------------------------------


def test_code_that_parses() -> None:
    assert analyze_syntax({"code": "x = 1\n"}) == {"syntax_ok": True, "syntax_error": None}
    assert analyze_syntax({"code": ""}) == {"syntax_ok": True, "syntax_error": None}


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("x = = 1\n", {"message": "invalid syntax", "line": 1, "column": 5}),
        ("é = (\n", {"message": "'(' was never closed", "line": 1, "column": 5}),
        ("x = 1\n  y = 2\n", {"message": "unexpected indent", "line": 2, "column": 2}),
        (
            "a = 1\nb = 'x\x00y'\n",
            {"message": "the code contains a null byte", "line": 2, "column": 7},
        ),
        (
            "a = 1\r\nb = 2\rc = '\x00'",
            {"message": "the code contains a null byte", "line": 3, "column": 6},
        ),
        (
            "x = 1  # \udc80\n",
            {
                "message": "the code contains text that is not valid Unicode (a lone surrogate)",
                "line": 1,
                "column": 10,
            },
        ),
        (
            "\ufeffx = 1\n",
            {"message": "invalid non-printable character U+FEFF", "line": 1, "column": 1},
        ),
    ],
)
def test_syntax_errors_carry_message_line_and_column(code: str, error: dict[str, Any]) -> None:
    assert analyze_syntax({"code": code}) == {"syntax_ok": False, "syntax_error": error}


@pytest.mark.parametrize(
    "code",
    [
        "-" * 100_000 + "1",
        "a" + ".b" * 100_000,
        "+".join(["1"] * 100_000),
        "f" + "()" * 100_000,
        "(" * 100_000,
        "[" * 150 + "]" * 150,
    ],
)
def test_absurd_nesting_is_a_syntax_problem_not_a_crash(code: str) -> None:
    result = analyze_syntax({"code": code})
    assert set(result) == {"syntax_ok", "syntax_error"}
    if not result["syntax_ok"]:
        error = result["syntax_error"]
        assert error is not None and error["message"]
        assert score_code({"code": code})["score"] == 0


def test_deep_nesting_without_position_says_why() -> None:
    error = analyze_syntax({"code": "-" * 100_000 + "1"})["syntax_error"]
    assert error == {
        "message": "the code is nested too deeply to parse",
        "line": None,
        "column": None,
    }


def test_a_huge_input_is_checked_whole() -> None:
    code = "x = 1\n" * 20_000 + "print(x)\n" * 300
    assert analyze_syntax({"code": code})["syntax_ok"] is True
    style = check_style({"code": code})
    assert style["issue_count"] == 300 and len(style["issues"]) == MAX_REPORTED_ISSUES
    assert style["issues"][0]["line"] == 20_001
    assert score_code({"code": code})["score"] == 0


# --- check_style --------------------------------------------------------------------------


def test_style_reports_every_catalogue_finding_with_its_position() -> None:
    code = 'é = "ü"; print(é)\ntry:\n    pass\nexcept:\n    pass\n'
    assert check_style({"code": code}) == {
        "issues": [
            {
                "rule": "FLW001",
                "message": "`print(...)` call: use `logging` instead",
                "line": 1,
                "column": 10,
                "fixable": True,
            },
            {
                "rule": "FLW002",
                "message": "bare `except:` also catches `KeyboardInterrupt`: catch `Exception`",
                "line": 4,
                "column": 1,
                "fixable": True,
            },
        ],
        "issue_count": 2,
        "style_ok": False,
        "style_checked": True,
    }


def test_clean_code_is_style_ok() -> None:
    assert check_style({"code": sample("clean.py")}) == {
        "issues": [],
        "issue_count": 0,
        "style_ok": True,
        "style_checked": True,
    }


def test_style_of_code_that_does_not_parse_says_it_was_not_checked() -> None:
    style = check_style({"code": "def f(:\n"})
    assert style == {
        "issues": [
            {
                "rule": "FLW000",
                "message": "the code does not parse, so it was not checked: invalid syntax",
                "line": 1,
                "column": 7,
                "fixable": False,
            }
        ],
        "issue_count": 1,
        "style_ok": False,
        "style_checked": False,
    }


# --- score_code ---------------------------------------------------------------------------

CATALOGUE_CASES = [
    ("print-call", "print('hi')\n", ["FLW001"]),
    ("bare-except", "try:\n    pass\nexcept:\n    pass\n", ["FLW002"]),
    ("eval", "eval('1')\n", ["FLW003"]),
    ("exec", "exec('x = 1')\n", ["FLW003"]),
    ("wildcard", "from os.path import *\n", ["FLW004"]),
    ("relative-wildcard", "from .. import *\n", ["FLW004"]),
    ("mutable-list", "def f(x=[]):\n    return x\n", ["FLW005"]),
    ("mutable-dict", "def f(*, x={}):\n    return x\n", ["FLW005"]),
    ("mutable-set", "def f(x={1}):\n    return x\n", ["FLW005"]),
    ("mutable-calls", "def f(a=list(), b=dict(), c=set()):\n    pass\n", ["FLW005"] * 3),
    ("mutable-comprehension", "g = lambda x=[i for i in 'ab']: x\n", ["FLW005"]),
    ("eq-none", "x = 1\nx == None\n", ["FLW006"]),
    ("ne-none", "x = 1\nNone != x\n", ["FLW006"]),
    ("assert-tuple", "assert (1, 'message')\n", ["FLW007"]),
    ("is-int", "x = 1\nx is 1\n", ["FLW008"]),
    ("is-not-str", "x = 1\nx is not 'a'\n", ["FLW008"]),
    ("is-list", "x = 1\n[] is x\n", ["FLW008"]),
    ("raise-notimplemented", "raise NotImplemented\n", ["FLW009"]),
    ("raise-notimplemented-call", "raise NotImplemented('todo')\n", ["FLW009"]),
]


@pytest.mark.parametrize(
    ("name", "code", "rules"), CATALOGUE_CASES, ids=[c[0] for c in CATALOGUE_CASES]
)
def test_each_rule_takes_its_points(name: str, code: str, rules: list[str]) -> None:
    assert [rule for rule, _ in found(code)] == rules
    expected = 100 - sum(RULES[rule].points for rule in rules)
    assert score_code({"code": code})["score"] == expected
    assert all(RULES[rule].points == 10 for rule in rules)


@pytest.mark.parametrize(
    "code",
    [
        "x = 1\nx is None\nx is not None\nx is True\nx is ...\n",
        "x = 1\nx == 0\nx != ''\n",
        "def f(x=None, y=(), z=0, w=frozenset()):\n    pass\n",
        "assert x, 'message'\nassert ()\n",
        "try:\n    pass\nexcept Exception:\n    pass\n",
        "raise NotImplementedError\n",
        "from os import path\nimport os.path as p\n",
        "eval = print = exec = len\neval('1')\nprint(2)\nexec('3')\n",
        "list = tuple\ndef f(x=list()):\n    pass\n",
    ],
)
def test_code_without_bad_patterns_scores_100(code: str) -> None:
    assert found(code) == []
    assert score_code({"code": code}) == {"score": 100, "score_reason": "no findings"}


def test_the_score_adds_up_and_stops_at_zero() -> None:
    code = "print(1)\nprint(2)\neval('3')\nfrom os import *\n"
    assert score_code({"code": code}) == {
        "score": 60,
        "score_reason": "100 - 40 for 4 findings (FLW001 x2, FLW003 x1, FLW004 x1)",
    }
    assert score_code({"code": "print(1)\n" * 10})["score"] == 0
    assert score_code({"code": "print(1)\n" * 25})["score"] == 0


def test_code_that_does_not_parse_scores_zero_and_says_why() -> None:
    assert score_code({"code": "def f(:\n    pass\n"}) == {
        "score": 0,
        "score_reason": "the code does not parse (line 1, column 7: invalid syntax): score 0",
    }


def test_the_catalogue_ids_are_stable() -> None:
    assert {rule_id: rule.name for rule_id, rule in RULES.items()} == {
        "FLW000": "syntax-error",
        "FLW001": "print-call",
        "FLW002": "bare-except",
        "FLW003": "eval-exec",
        "FLW004": "wildcard-import",
        "FLW005": "mutable-default",
        "FLW006": "compare-none",
        "FLW007": "assert-tuple",
        "FLW008": "is-literal",
        "FLW009": "raise-notimplemented",
    }
    fixable = {rule_id for rule_id, rule in RULES.items() if rule.fix}
    assert fixable == {"FLW001", "FLW002", "FLW006", "FLW008", "FLW009"}


# --- the samples --------------------------------------------------------------------------


def test_sample_clean_scores_100_and_refine_leaves_it_alone() -> None:
    state: RefineState = {"code": sample("clean.py")}
    assert analyze_syntax(state)["syntax_ok"] is True
    assert score_code(state)["score"] == 100
    assert refine_code(state) == {
        "attempts": 1,
        "fixes": [],
        "refine_note": "nothing refine can fix",
    }


def test_sample_prints_scores_low_and_refine_lifts_it_past_80() -> None:
    state: Any = {"code": sample("prints.py")}
    assert score_code(state)["score"] == 30
    update = refine_code(state)
    assert [fix["rule"] for fix in update["fixes"]] == [
        "FLW006",
        "FLW001",
        "FLW001",
        "FLW002",
        "FLW001",
        "FLW001",
    ]
    assert (
        update["refine_note"] == "fixed 6 of 6 findings refine can fix; 1 finding left for a person"
    )
    state |= update
    assert analyze_syntax(state)["syntax_ok"] is True
    assert score_code(state)["score"] == 90
    assert found(state["code"]) == [("FLW001", 33)]  # print("bye", end=""): keywords stay


def test_sample_syntax_error_scores_zero() -> None:
    state: RefineState = {"code": sample("syntax_error.py")}
    assert analyze_syntax(state) == {
        "syntax_ok": False,
        "syntax_error": {"message": "'(' was never closed", "line": 4, "column": 10},
    }
    assert score_code(state)["score"] == 0
    assert "code" not in refine_code(state)


def test_sample_unfixable_stays_below_80() -> None:
    state: Any = {"code": sample("unfixable.py")}
    assert sorted(rule for rule, _ in found(state["code"])) == [
        "FLW003",
        "FLW003",
        "FLW004",
        "FLW005",
        "FLW005",
        "FLW007",
    ]
    assert score_code(state)["score"] == 40
    update = refine_code(state)
    assert update == {
        "attempts": 1,
        "fixes": [],
        "refine_note": "nothing refine can fix; 6 findings left for a person",
    }
    assert score_code(state | update)["score"] == 40


REGISTERED_MODES = """
from flowc.runtime import REGISTRY
from flowc.runtime.tools import load_builtin_packs
load_builtin_packs()
print(*(f"{tool.spec.name}:{tool.mode}" for tool in REGISTRY))
"""


@pytest.mark.parametrize("tool", TOOLS)
def test_code_over_the_size_limit_is_refused_naming_the_limit(tool: Any) -> None:
    at_the_limit = "é" * (MAX_CODE_BYTES // 2)  # two bytes each in UTF-8
    assert "syntax_ok" in analyze_syntax({"code": at_the_limit})
    with pytest.raises(CodeTooLarge) as error:
        tool({"code": at_the_limit + "x"})
    assert str(error.value) == (
        "`code` is 1,048,577 bytes; the code-review tools take at most 1,048,576 bytes "
        "(MAX_CODE_BYTES)"
    )


def test_the_tools_run_in_worker_processes_and_a_refusal_fails_the_run() -> None:
    # In a fresh interpreter: tests elsewhere swap the registry's tools and put them back.
    modes = subprocess.run(
        [sys.executable, "-c", REGISTERED_MODES], capture_output=True, text=True, check=True
    )
    assert modes.stdout.split() == ["analyze:process", "analyze_syntax:process"] + [
        f"{name}:process"
        for name in ("check_style", "refine", "refine_code", "score", "score_code", "style")
    ]
    load_builtin_packs()
    engine = WorkflowEngine("analyze -> style -> score -> end")
    result = asyncio.run(engine.run(initial_state={"code": "#" * (MAX_CODE_BYTES + 1)}))
    assert result.error is not None
    assert (result.error.code, result.error.node, result.error.message) == (
        "tool_error",
        "analyze",
        "tool `analyze` failed: CodeTooLarge: `code` is 1,048,577 bytes; the code-review tools "
        "take at most 1,048,576 bytes (MAX_CODE_BYTES)",
    )
