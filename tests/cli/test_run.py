"""`flowc run`: trace, final state, exit codes, inputs, and the real code-review flow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowc.cli.main import main
from tests.cli.conftest import CLEAN_FLOW, WriteFile

ROOT = Path(__file__).parents[2]

FAILING_TOOLS = '''\
from flowc.runtime import register_tool


@register_tool
def explode(state):
    """Always fails."""
    raise ValueError("no luck")
'''


def test_run_prints_a_trace_and_the_final_state(
    write_file: WriteFile, tools_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = write_file("review.flow", CLEAN_FLOW)
    code = main(["run", str(flow), "--tools", str(tools_path), "--input", '{"code": "x"}'])
    out, err = capsys.readouterr()
    assert code == 0
    assert out == 'code: "x"\nparsed: true\nscore: 90\n'
    trace = err.splitlines()
    assert [line.split()[:2] for line in trace[:2]] == [["1", "analyze"], ["2", "score"]]
    assert trace[0].endswith("ms  parsed")
    assert trace[1].endswith("ms  score")
    assert trace[-1] == "run succeeded in 2 steps"


def test_run_json_is_the_whole_result(
    write_file: WriteFile, tools_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = write_file("review.flow", CLEAN_FLOW)
    assert main(["run", str(flow), "--tools", str(tools_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "succeeded"
    assert result["state"] == {"parsed": True, "score": 90}
    assert [step["node"] for step in result["steps"]] == ["analyze", "score"]
    assert result["error"] is None


def test_inputs_merge_in_order(
    write_file: WriteFile, tools_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = write_file("review.flow", CLEAN_FLOW)
    state_file = write_file("state.json", '{"a": 1, "code": "old", "b": 2}')
    code_file = write_file("code.py", "print(1)\n")
    argv = ["run", str(flow), "--tools", str(tools_path), "--json", "--input-file",
            str(state_file), "--input", '{"b": 3}', "--code-file", str(code_file)]  # fmt: skip
    assert main(argv) == 0
    state = json.loads(capsys.readouterr().out)["state"]
    assert state == {"a": 1, "b": 3, "code": "print(1)\n", "parsed": True, "score": 90}


def test_a_failed_run_exits_1_and_points_at_the_node(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = write_file("failing_tools.py", FAILING_TOOLS)
    write_file("f.flow", "node boom = explode\nstart -> boom\nboom -> end\n")
    assert main(["run", "f.flow", "--tools", str(tools)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "f.flow:1:1: error[tool_error]: run failed at node `boom`: tool `explode` failed: "
        "ValueError: no luck\n"
        "  1 | node boom = explode\n"
        "    | ^^^^^^^^^^^^^^^^^^^\n"
    )
    assert "Traceback" not in err


def test_max_steps_option(
    write_file: WriteFile, tools_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = write_file("loop.flow", "analyze -> score; score ? score > 1 -> analyze : end\n")
    assert main(["run", str(flow), "--tools", str(tools_path), "--max-steps", "3"]) == 1
    err = capsys.readouterr().err
    assert "error[max_steps]: run failed at node `score`: the run took more than 3 steps" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--input", "{nope"], "flowc: error: --input is not valid JSON: Expecting property name"),
        (["--input", "[1]"], 'flowc: error: --input must be a JSON object, like {"code": "..."}'),
        (["--input", '{"x": NaN}'], "flowc: error: --input is not valid JSON: NaN is not valid"),
        (["--code-file", "missing.py"], "flowc: error: cannot read `missing.py`"),
        (["--max-steps", "0"], "flowc: error: --max-steps must be from 1 to 1,000,000"),
    ],
)
def test_bad_inputs_exit_2(
    write_file: WriteFile,
    tools_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    flow = write_file("review.flow", CLEAN_FLOW)
    assert main(["run", str(flow), "--tools", str(tools_path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert "Traceback" not in err


def test_compile_errors_exit_2(write_file: WriteFile, capsys: pytest.CaptureFixture[str]) -> None:
    flow = write_file("bad.flow", "a -> -> b\n")
    assert main(["run", str(flow)]) == 2
    assert "error[E010]: expected a node name after `->`" in capsys.readouterr().err


def test_the_code_review_example_fixes_prints() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "flowc.cli.main", "run", "examples/code_review.flow", "--code-file",
         "examples/samples/prints.py", "--json"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["status"] == "succeeded"
    assert result["state"]["score"] >= 80
    before = (ROOT / "examples/samples/prints.py").read_text().count("print(")
    assert result["state"]["code"].count("print(") < before
    assert [step["node"] for step in result["steps"]][:4] == ["analyze", "style", "score", "refine"]
