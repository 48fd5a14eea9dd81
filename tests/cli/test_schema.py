"""`flowc schema FILE` prints a flow's input schema; `flowc run` refuses input that does not
fit the flow's `state` declarations (exit 2, each problem named) and fills in defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowc.cli.main import main
from flowc.compiler.ir import json_schema
from tests.cli.conftest import WriteFile
from tests.conftest import TYPED_SCHEMA, TYPED_STATE

TYPED_FLOW = TYPED_STATE + "analyze -> score -> end\n"


def test_schema_of_a_file_is_its_input_schema(
    write_file: WriteFile, tools_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = write_file("typed.flow", TYPED_FLOW)
    assert main(["schema", str(flow), "--tools", str(tools_path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert json.loads(out) == TYPED_SCHEMA
    assert out.startswith('{\n  "$schema": ')


def test_schema_of_a_flow_with_errors_prints_them_and_exits_1(
    write_file: WriteFile, tools_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("bad.flow", "state code: strr\nanalyze -> end\n")
    assert main(["schema", "bad.flow", "--tools", str(tools_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "bad.flow:1:13: error[E120]: unknown type `strr`\n"
        "  1 | state code: strr\n"
        "    |             ^^^^\n"
        "  help: did you mean `str`?\n"
        "\n"
        "bad.flow: 1 error, 0 warnings\n"
    )


def test_schema_without_a_file_is_still_the_ir_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json_schema()
    assert "StateKey" in schema["$defs"]


def test_run_refuses_input_that_does_not_fit_before_running(
    write_file: WriteFile, tools_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = write_file("typed.flow", TYPED_FLOW)
    given = '{"attempts": "3", "issues": [{"line": "two"}], "reviewer": 5}'
    assert main(["run", str(flow), "--tools", str(tools_path), "--input", given]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "flowc: error: the input does not fit the flow's state declarations:\n"
        "  `code`: a required input (`code: str`) is missing\n"
        "  `attempts`: expected int, got a string\n"
        "  `issues[0].line`: expected int, got a string\n"
        "  `reviewer`: expected str?, got an integer\n"
    )


def test_run_fills_in_defaults(
    write_file: WriteFile, tools_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = write_file("typed.flow", TYPED_FLOW)
    code_file = write_file("code.py", "print(1)\n")
    argv = ["run", str(flow), "--tools", str(tools_path), "--json", "--code-file", str(code_file)]
    assert main(argv) == 0
    state = json.loads(capsys.readouterr().out)["state"]
    assert state == {
        "code": "print(1)\n",
        "attempts": 0,
        "issues": [],
        "reviewer": None,
        "parsed": True,
        "score": 90,
    }
