"""Sub-flows from the command line: found beside the file, then in each `--flows DIR`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from flowc.cli.main import main
from flowc.cli.run import Progress
from tests.cli.conftest import WriteFile

CHILD = """\
flow review
state code: str
analyze -> score -> end
"""
PARENT = """\
flow gate
state code: str
node check = flow review

check -> end
"""


@pytest.fixture(autouse=True)
def review_tools(tools_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test tool module (`analyze`, `score`, ...) for every command."""
    monkeypatch.setenv("FLOWC_TOOLS", str(tools_path))


def test_check_finds_the_child_beside_the_file(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("review.flow", CHILD)
    parent = write_file("gate.flow", PARENT)
    assert main(["check", str(parent)]) == 0
    assert capsys.readouterr().out == ""


def test_flows_dirs_are_searched_after_the_files_folder(
    write_file: WriteFile, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("unrelated.flow", CHILD.replace("review", "unrelated"))  # and work in tmp_path
    (tmp_path / "app").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "app" / "gate.flow").write_text(PARENT, encoding="utf-8")
    (tmp_path / "lib" / "review.flow").write_text(CHILD, encoding="utf-8")
    assert main(["check", "app/gate.flow"]) == 1
    out = capsys.readouterr().out
    assert "error[E150]: sub-flow `review` cannot be found: no file `review.flow` in app" in out
    assert (
        "help: write the flow `review` in `review.flow` beside this one, or pass `--flows DIR`"
        in out
    )
    assert main(["check", "--flows", "lib", "app/gate.flow"]) == 0


def test_compile_holds_the_childs_ir(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("review.flow", CHILD)
    parent = write_file("gate.flow", PARENT)
    assert main(["compile", str(parent)]) == 0
    ir = json.loads(capsys.readouterr().out)
    assert ir["ir_version"] == 2
    (node,) = ir["nodes"]
    assert node["flow"]["name"] == "review"
    assert node["flow"]["ir"]["name"] == "review"
    assert [n["name"] for n in node["flow"]["ir"]["nodes"]] == ["analyze", "score"]


def test_standard_input_finds_children_in_the_working_folder(
    write_file: WriteFile, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("review.flow", CHILD)
    stdin = io.TextIOWrapper(io.BytesIO(PARENT.encode("utf-8")), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert main(["check", "-"]) == 0


def test_graph_draws_the_child_as_a_subgraph(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("review.flow", CHILD)
    parent = write_file("gate.flow", PARENT)
    assert main(["graph", str(parent)]) == 0
    out = capsys.readouterr().out
    assert 'subgraph node_check["check (flow review)"]' in out
    assert "sub1_node_analyze --> sub1_node_score" in out


def test_a_cycle_between_files_is_reported_at_the_node(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("ping.flow", "flow ping\nnode p = flow pong\np -> end\n")
    write_file("pong.flow", "flow pong\nnode q = flow ping\nq -> end\n")
    assert main(["check", "ping.flow"]) == 1
    out = capsys.readouterr().out
    assert "ping.flow:2:15: error[E151]: sub-flows form a cycle: `ping` -> `pong` -> `ping`" in out


def test_a_child_with_errors_points_at_its_file(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("review.flow", "flow review\nanalyze -> scroe -> end\n")
    parent = write_file("gate.flow", PARENT)
    assert main(["check", str(parent)]) == 1
    out = capsys.readouterr().out
    assert "error[E153]: sub-flow `review` (" in out
    assert (
        "review.flow) has 1 error; the first, line 2, column 12: E201 unknown tool `scroe`" in out
    )


def test_fmt_keeps_a_sub_flow_as_written(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = write_file("gate.flow", PARENT)
    assert main(["fmt", "--check", str(parent)]) == 0


def test_run_runs_the_child_found_in_a_flows_dir(
    write_file: WriteFile, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "review.flow").write_text(CHILD, encoding="utf-8")
    parent = write_file("gate.flow", PARENT)
    command = ["run", str(parent), "--flows", "lib", "--input", '{"code": "x = 1"}']
    assert main([*command, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "succeeded"
    # The child's steps are its own run's; the parent has one step, the sub-flow node's.
    assert [(s["seq"], s["node"]) for s in result["steps"]] == [(1, "check")]
    assert result["steps"][0]["delta"] == {}  # `parsed` and `score` are the child's own keys
    assert main(command) == 0
    err = capsys.readouterr().err
    sep = Progress.SEPARATOR
    assert f"check{sep}analyze" in err and f"check{sep}score" in err
