"""`flowc run`: trace, final state, exit codes, inputs, and the real code-review flow."""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import subprocess
import sys
import time
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


def test_a_failed_step_takes_its_error_route_and_the_run_succeeds(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = write_file("failing_tools.py", FAILING_TOOLS)
    write_file(
        "f.flow",
        "node boom = explode with retries = 1, backoff = 0, on_error = end\nboom -> end\n",
    )
    assert main(["run", "f.flow", "--tools", str(tools), "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["status"] == "succeeded"
    assert result["state"]["error"] == {
        "code": "tool_error",
        "message": "tool `explode` failed: ValueError: no luck (after 2 attempts)",
        "node": "boom",
        "attempts": 2,
    }
    (step,) = result["steps"]
    assert (step["node"], step["attempts"], step["failed"]) == ("boom", 2, True)
    assert "failed: error, on to its error route" in err


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


def test_the_triage_example_reviews_twice_and_waits_for_each_approval() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "flowc.cli.main", "run", "examples/triage.flow", "--code-file",
         "examples/samples/prints.py", "--json", "--resume", '{"approved": false}',
         "--resume", '{"approved": true}'],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert (result["status"], result["state"]["approved"]) == ("succeeded", True)
    shown = [(step["node"], step.get("branch")) for step in result["steps"]]
    # Its reviewers ran as parallel branches (in the order they finished), then the join.
    review = {("style", "0"), ("score", "1")}
    assert shown[0] == ("analyze", None) and set(shown[1:3]) == review
    assert shown[3:6] == [("analyze", "join"), ("approval", None), ("refine", None)]
    assert set(shown[7:9]) == review
    assert shown[9:] == [("analyze", "join"), ("approval", None)]
    assert "style [0]" in completed.stderr and "analyze [join]" in completed.stderr


SLEEPY_TOOLS = '''\
import os
import time

from flowc.runtime import register_tool


@register_tool
def first(state):
    """Quick."""
    return {"a": 1}


@register_tool(blocking=True)
def nap(state):
    """Says it started, then sleeps far longer than the test waits."""
    open(os.environ["FLOWC_TEST_STARTED"], "w").close()
    time.sleep(30)
    return {"b": 2}


@register_tool
def flaky(state):
    """Fails its first attempt."""
    from flowc.runtime import current_step

    if current_step().attempt == 1:
        raise RuntimeError("not yet")
    return {"c": 3}
'''


@pytest.mark.parametrize("as_json", [True, False])
def test_ctrl_c_cancels_the_run_and_exits_130(tmp_path: Path, as_json: bool) -> None:
    tools = tmp_path / "sleepy_tools.py"
    tools.write_text(SLEEPY_TOOLS, encoding="utf-8")
    flow = tmp_path / "sleepy.flow"
    flow.write_text("first -> nap -> end\n", encoding="utf-8")
    started = tmp_path / "started"
    command = [sys.executable, "-m", "flowc.cli.main", "run", str(flow), "--tools", str(tools)]
    process = subprocess.Popen(
        [*command, *(["--json"] if as_json else [])],
        cwd=tmp_path,
        env={**os.environ, "FLOWC_TEST_STARTED": str(started)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Whatever the test runner ignores, the command gets Ctrl-C as a terminal gives it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the tool never started"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)  # well before the tool's 30 s are up
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "run cancelled at node `nap` after 1 step"
    if as_json:
        result = json.loads(out)
        assert result["status"] == "cancelled"
        assert result["state"] == {"a": 1}
        assert [step["node"] for step in result["steps"]] == ["first"]
        assert result["error"] == {
            "code": "cancelled",
            "message": "the run was cancelled (Ctrl-C)",
            "node": "nap",
            "span": {"line": 1, "column": 10, "end_line": 1, "end_column": 13},
        }
    else:
        assert out == "a: 1\n"


def test_a_failed_attempt_shows_in_the_trace(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = write_file("sleepy_tools.py", SLEEPY_TOOLS)
    write_file("f.flow", "node f = flaky with retries = 1, backoff = 0\nf -> end\n")
    assert main(["run", "f.flow", "--tools", str(tools), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["steps"][0]["attempts"] == 2
    lines = err.splitlines()
    assert lines[0] == "    1  f                attempt 1 failed: tool_error; retrying in 0.00 s"
    assert lines[1].split()[:2] == ["1", "f"]
    assert lines[-1] == "run succeeded in 1 steps"


WAIT_TOOLS = '''\
from flowc.runtime import register_tool


@register_tool
def count(state):
    """Add 1 to `n`."""
    return {"n": state.get("n", 0) + 1}


@register_tool
def nudge(state):
    """The error route's target."""
    return {"nudged": state["error"]["code"]}
'''

#: `count`, a wait; approved: `count` again and a second wait, then the end.
TWO_WAITS = """\
state approved: bool? = null
state n: int = 0
node first = wait("approval", timeout = 60) with on_error = reminder
node second = wait("release")
node again = count
node reminder = nudge
start -> count -> first
first ? approved -> again : end
again -> second -> end
reminder -> end
"""


def test_a_run_goes_on_past_each_wait_with_the_resume_inputs_in_order(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = write_file("wait_tools.py", WAIT_TOOLS)
    write_file("w.flow", TWO_WAITS)
    argv = ["run", "w.flow", "--tools", str(tools), "--json", "--resume", '{"approved": true}',
            "--resume", '{"note": "shipped", "n": 7.0}']  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert (result["status"], result["error"]) == ("succeeded", None)
    assert result["state"] == {"approved": True, "n": 7, "note": "shipped"}
    assert [(s["seq"], s["node"], s["delta"]) for s in result["steps"]] == [
        (1, "count", {"n": 1}),
        (2, "first", {"approved": True}),
        (3, "again", {"n": 2}),
        (4, "second", {"note": "shipped", "n": 7}),
    ]
    assert [line.split()[:2] for line in err.splitlines()[:4]] == [
        ["1", "count"], ["2", "first"], ["3", "again"], ["4", "second"],
    ]  # fmt: skip
    assert err.splitlines()[1].endswith("ms  approved")
    assert err.splitlines()[-1] == "run succeeded in 4 steps"


def test_a_run_that_waits_without_input_or_terminal_exits_3_with_the_state_so_far(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = write_file("wait_tools.py", WAIT_TOOLS)
    write_file("w.flow", TWO_WAITS)
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"approved": true}\n'))  # not a terminal
    assert main(["run", "w.flow", "--tools", str(tools), "--resume", '{"approved": true}']) == 3
    out, err = capsys.readouterr()
    assert out == "approved: true\nn: 2\n"
    assert err.splitlines()[-1] == (
        "run waits at node `second` for `release` after 3 steps, with no input to go on: "
        "give it with --resume JSON"
    )
    assert main(["run", "w.flow", "--tools", str(tools), "--json"]) == 3
    result = json.loads(capsys.readouterr().out)
    assert (result["status"], result["state"]) == ("waiting", {"approved": None, "n": 1})
    assert result["waiting"] == {"node": "first", "name": "approval", "timeout": 60.0}
    assert [s["node"] for s in result["steps"]] == ["count"]


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ('{"approved": "yes"}', "--resume #1 does not fit the flow's state declarations:\n"
         "  `approved`: expected bool?, got a string"),
        ('{"approved": tru', "--resume #1 is not valid JSON: Expecting value: line 1 column 14 "
         "(char 13)"),
        ("[1]", '--resume #1 must be a JSON object, like {"code": "..."}'),
    ],
)  # fmt: skip
def test_a_resume_input_that_does_not_fit_exits_2_before_the_run(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str], given: str, problem: str
) -> None:
    tools = write_file("wait_tools.py", WAIT_TOOLS)
    write_file("w.flow", TWO_WAITS)
    assert main(["run", "w.flow", "--tools", str(tools), "--resume", given]) == 2
    assert capsys.readouterr() == ("", f"flowc: error: {problem}\n")


def test_the_help_documents_resume_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--resume JSON the input of the run's next wait, a JSON object" in text
    assert "3 the run waits at a wait node with no input to go on" in text


def run_on_a_terminal(tmp_path: Path, flow: str, typed: bytes | None) -> tuple[int, str, str]:
    """`flowc run` with a terminal as its standard input, `typed` written to it."""
    (tmp_path / "wait_tools.py").write_text(WAIT_TOOLS, encoding="utf-8")
    (tmp_path / "w.flow").write_text(flow, encoding="utf-8")
    controller, terminal = pty.openpty()
    command = [sys.executable, "-m", "flowc.cli.main", "run", "w.flow", "--tools",
               "wait_tools.py", "--json"]  # fmt: skip
    try:
        process = subprocess.Popen(
            command, cwd=tmp_path, stdin=terminal, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        if typed is not None:
            os.write(controller, typed)
        out, err = process.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    return process.returncode, out, err


def test_on_a_terminal_a_wait_reads_its_input_there(tmp_path: Path) -> None:
    flow = TWO_WAITS.replace("again -> second -> end", "again -> end")
    code, out, err = run_on_a_terminal(tmp_path, flow, b'{"approved":\n true}\n')
    assert code == 0, err
    assert "the run waits at node `first` for `approval` (it times out in 60 s)" in err
    result = json.loads(out)
    assert (result["status"], result["state"]) == ("succeeded", {"approved": True, "n": 2})
    assert [s["node"] for s in result["steps"]] == ["count", "first", "again"]


def test_on_a_terminal_a_wait_past_its_timeout_takes_its_error_route(tmp_path: Path) -> None:
    flow = TWO_WAITS.replace("timeout = 60", "timeout = 0.3")
    code, out, err = run_on_a_terminal(tmp_path, flow, None)
    assert code == 0, err
    result = json.loads(out)
    assert result["state"]["nudged"] == "wait_timeout"
    assert [(s["node"], s.get("failed", False)) for s in result["steps"]] == [
        ("count", False), ("first", True), ("reminder", False),
    ]  # fmt: skip
    message = "the wait for `approval` was not resumed within its timeout of 0.3 s"
    assert result["steps"][1]["delta"]["error"]["message"] == message
