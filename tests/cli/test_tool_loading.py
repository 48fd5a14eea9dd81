"""`--tools`, `FLOWC_TOOLS` and the built-in packs: what gets imported, and clean failures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from flowc.cli.main import main
from flowc.cli.tool_loading import tool_entries
from flowc.runtime import REGISTRY
from tests.cli.conftest import CLEAN_FLOW, TOOLS_MODULE, WriteFile

EXTRA_TOOLS = '''\
from flowc.runtime import register_tool


@register_tool
def publish(state):
    """Publish the result."""
'''


def tool_names(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if line[0] != " "]


def test_tools_by_module_name(
    write_file: WriteFile,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_file("cli_test_review_tools.py", TOOLS_MODULE)
    write_file("review.flow", CLEAN_FLOW)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", "review.flow", "--tools", "cli_test_review_tools"]) == 0
    assert capsys.readouterr() == ("", "")


def test_tools_by_module_name_from_the_current_folder(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    # As `python -c "import my_tools"` would: the current folder is searched first.
    write_file("my_tools.py", TOOLS_MODULE)
    write_file("review.flow", CLEAN_FLOW)
    assert main(["check", "review.flow", "--tools", "my_tools"]) == 0
    assert capsys.readouterr() == ("", "")


def test_a_tool_file_imports_its_neighbours(
    write_file: WriteFile, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As `python pack/tools.py` would: the file's own folder is searched first.
    (tmp_path / "pack").mkdir()
    write_file("pack/shouting.py", "def shout(text):\n    return text.upper()\n")
    write_file(
        "pack/loud_tools.py",
        "from shouting import shout\n"
        "from flowc.runtime import register_tool\n\n\n"
        "@register_tool\n"
        "def loud(state):\n"
        '    """Shout the message."""\n'
        '    return {"message": shout(state["message"])}\n',
    )
    assert main(["tools", "--tools", "pack/loud_tools.py"]) == 0
    assert capsys.readouterr() == (
        "loud: Shout the message.\n    from loud_tools.loud (pack/loud_tools.py:5)\n",
        "",
    )


def test_a_tool_file_named_like_another_module_shadows_nothing(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    write_file("json.py", EXTRA_TOOLS)
    assert main(["tools", "--tools", "json.py"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("publish: Publish the result.\n    from flowc_tools_json_")
    assert out.endswith(".publish (json.py:4)\n")
    assert sys.modules["json"] is json


def test_taking_a_builtin_name_without_replace_exits_2(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    from flowc.runtime.tools.code_review import score_code

    REGISTRY.add(score_code, "score")  # as the built-in pack registers it
    write_file(
        "scoring.py",
        "from flowc.runtime import register_tool\n\n\n"
        "@register_tool\n"
        "def score(state):\n"
        "    return {'score': 100}\n",
    )
    assert main(["tools", "--tools", "scoring.py"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "flowc: error: cannot load tools from `scoring.py`: ToolConflictError: tool `score` "
        "is already registered by `flowc.runtime.tools.code_review.score_code` ("
    )
    assert err.endswith(
        "`scoring.score` (" + str(Path.cwd() / "scoring.py") + ":4) cannot take its name: "
        "register it under another name, or pass `replace=True` to replace it\n"
    )


def test_tools_by_path(
    write_file: WriteFile, tools_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("review.flow", CLEAN_FLOW)
    assert main(["check", "review.flow", "--tools", str(tools_path)]) == 0
    assert capsys.readouterr() == ("", "")


def test_tools_option_repeats(
    write_file: WriteFile, tools_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = write_file("extra.py", EXTRA_TOOLS)
    assert main(["tools", "--tools", str(tools_path), "--tools", str(extra)]) == 0
    assert tool_names(capsys) == ["analyze", "notify", "publish", "refine", "score"]


def test_flowc_tools_lists_modules_separated_like_path(
    write_file: WriteFile,
    tools_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_file("cli_test_extra.py", EXTRA_TOOLS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FLOWC_TOOLS", f"{tools_path}{os.pathsep}cli_test_extra{os.pathsep}")
    assert main(["tools"]) == 0
    assert tool_names(capsys) == ["analyze", "notify", "publish", "refine", "score"]


def test_builtin_packs_always_load(
    write_file: WriteFile,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_file("cli_test_pack.py", EXTRA_TOOLS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("flowc.runtime.tools.BUILTIN_PACKS", ("cli_test_pack",))
    assert main(["tools"]) == 0
    assert capsys.readouterr().out == (
        "publish: Publish the result.\n    from cli_test_pack.publish (cli_test_pack.py:4)\n"
    )


def test_a_builtin_pack_that_fails_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("flowc.runtime.tools.BUILTIN_PACKS", ("cli_test_no_such_pack",))
    assert main(["tools"]) == 2
    assert capsys.readouterr() == (
        "",
        "flowc: error: cannot load tools from `cli_test_no_such_pack`: "
        "ModuleNotFoundError: No module named 'cli_test_no_such_pack'\n",
    )


def test_a_module_that_raises_exits_2_with_one_line(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("broken.py", "raise RuntimeError('no database\\nconfigured')\n")
    write_file("review.flow", CLEAN_FLOW)
    assert main(["check", "review.flow", "--tools", "broken.py"]) == 2
    assert capsys.readouterr() == (
        "",
        "flowc: error: cannot load tools from `broken.py`: RuntimeError: no database configured\n",
    )


def test_a_module_with_a_syntax_error_exits_2(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("typo.py", "def oops(:\n")
    assert main(["tools", "--tools", "typo.py"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowc: error: cannot load tools from `typo.py`: SyntaxError: ")
    assert err.count("\n") == 1


def test_a_bad_tool_definition_exits_2(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file(
        "stateless.py", "from flowc.runtime import register_tool\nregister_tool(lambda: 1)\n"
    )
    assert main(["tools", "--tools", "stateless.py"]) == 2
    assert capsys.readouterr().err == (
        "flowc: error: cannot load tools from `stateless.py`: ToolDefinitionError: "
        "tool `<lambda>`: the first parameter must take the state, as in `def <lambda>(state)`\n"
    )


def test_an_unknown_module_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "--tools", "cli_test_missing_module"]) == 2
    assert capsys.readouterr().err == (
        "flowc: error: cannot load tools from `cli_test_missing_module`: "
        "ModuleNotFoundError: No module named 'cli_test_missing_module'\n"
    )


def test_a_missing_path_exits_2(write_file: WriteFile, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "--tools", "gone/tools.py"]) == 2
    assert capsys.readouterr().err == (
        "flowc: error: cannot load tools from `gone/tools.py`: no such file\n"
    )


def test_a_directory_is_not_a_tool_file(
    write_file: WriteFile, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pack").mkdir()
    assert main(["tools", "--tools", "pack/"]) == 2
    assert capsys.readouterr().err == (
        "flowc: error: cannot load tools from `pack/`: not a .py file\n"
    )


def test_a_failing_module_leaves_nothing_half_imported(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("half.py", "import sys\nHALF = sys.modules[__name__]\nraise ValueError('x')\n")
    assert main(["tools", "--tools", "half.py"]) == 2
    assert "half" not in sys.modules


def test_a_path_module_runs_again_in_a_new_main_call(
    tools_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools", "--tools", str(tools_path)]) == 0
    first = capsys.readouterr().out
    for tool in list(REGISTRY):  # as if a new process started
        REGISTRY.remove(tool.spec.name)
    del sys.modules["review_tools"]
    assert main(["tools", "--tools", str(tools_path)]) == 0
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(
    ("environment", "options", "entries"),
    [
        ("", [], []),
        ("a", ["b"], ["a", "b"]),
        (f"a{os.pathsep}{os.pathsep} b {os.pathsep}", ["a", "c"], ["a", "b", "c"]),
    ],
)
def test_tool_entries_put_the_environment_first_without_blanks_or_repeats(
    environment: str, options: list[str], entries: list[str]
) -> None:
    assert tool_entries(options, {"FLOWC_TOOLS": environment}) == entries


def test_serve_takes_tools_and_stops_before_serving_when_one_fails(
    write_file: WriteFile, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    write_file("broken_tools.py", "raise RuntimeError('no such service')\n")
    assert main(["serve", "--port", "0", "--tools", "broken_tools"]) == 2
    assert capsys.readouterr() == (
        "",
        "flowc: error: cannot load tools from `broken_tools`: RuntimeError: no such service\n",
    )
