"""`flowc compile` and `flowc schema`: IR JSON on stdout, diagnostics on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowc.cli.main import main
from flowc.compiler.ir import json_schema
from tests.cli.conftest import CLEAN_FLOW, WriteFile


@pytest.fixture
def tools_option(tools_path: Path) -> list[str]:
    return ["--tools", str(tools_path)]


def test_compile_prints_the_ir(
    write_file: WriteFile, tools_option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("review.flow", CLEAN_FLOW)
    assert main(["compile", "review.flow", *tools_option]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    ir = json.loads(out)
    assert ir["ir_version"] == 1
    assert ir["name"] == "review"
    assert ir["start"] == "analyze"
    assert [(n["name"], n["tool"], n["args"]) for n in ir["nodes"]] == [
        ("fix", "refine", {"max_fixes": 3}),
        ("analyze", "analyze", {}),
        ("score", "score", {}),
    ]
    assert ir["routes"]["score"]["kind"] == "branch"
    assert ir["routes"]["score"]["otherwise"] == "end"
    assert ir["source_hash"].startswith("sha256:")


def test_compiling_twice_gives_the_same_bytes(
    write_file: WriteFile, tools_option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("review.flow", CLEAN_FLOW)
    assert main(["compile", "review.flow", *tools_option]) == 0
    first = capsys.readouterr().out
    assert main(["compile", "review.flow", *tools_option]) == 0
    assert capsys.readouterr().out == first
    assert first.endswith("}\n")


def test_warnings_go_to_stderr_beside_the_ir(
    write_file: WriteFile, tools_option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("warn.flow", "analyze -> score\n")
    assert main(["compile", "warn.flow", *tools_option]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["nodes"][1]["name"] == "score"
    assert err == (
        "warn.flow:1:12: warning[W502]: node `score` has no outgoing edge, "
        "so the run ends there\n"
        "  1 | analyze -> score\n"
        "    |            ^^^^^\n"
        "  help: write `score -> end` to say so\n"
        "\n"
        "warn.flow: 0 errors, 1 warning\n"
    )


def test_errors_go_to_stderr_and_exit_1(
    write_file: WriteFile, tools_option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("bad.flow", "analyze -> scor -> end\n")
    assert main(["compile", "bad.flow", *tools_option]) == 1
    assert capsys.readouterr() == (
        "",
        "bad.flow:1:12: error[E201]: unknown tool `scor` "
        "(a node without a `node` declaration runs the tool of its name)\n"
        "  1 | analyze -> scor -> end\n"
        "    |            ^^^^\n"
        "  help: did you mean `score`?\n"
        "\n"
        "bad.flow: 1 error, 0 warnings\n",
    )


def test_invalid_utf8_exits_1(
    tmp_path: Path, tools_option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.flow"
    path.write_bytes(b"\xffanalyze -> end\n")
    assert main(["compile", str(path), *tools_option]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(
        f"{path}:1:1: error[E002]: the text is not valid UTF-8: byte 0xff (invalid start byte)\n"
    )


def test_a_missing_file_exits_2(
    write_file: WriteFile, tools_option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compile", "nowhere.flow", *tools_option]) == 2
    assert capsys.readouterr() == (
        "",
        "flowc: error: cannot read `nowhere.flow`: No such file or directory\n",
    )


def test_schema_prints_the_ir_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == json_schema()
    assert out.startswith('{\n  "$defs": {\n')
