"""`cli.main`: usage errors, help and version exit like a compiler's, never with a traceback."""

from __future__ import annotations

from importlib import metadata

import pytest

from flowc.cli.main import entry, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr() == (f"flowc {metadata.version('flowc')}\n", "")


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: flowc [-h] [--version] COMMAND ...\n")
    for command in ("check", "compile", "fmt", "graph", "schema", "tools"):
        assert f"    {command} " in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert capsys.readouterr() == (
        "",
        "usage: flowc [-h] [--version] COMMAND ...\n"
        "flowc: error: the following arguments are required: COMMAND\n",
    )


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch"]) == 2
    assert "flowc: error: argument COMMAND: invalid choice: 'launch'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check"], "flowc check: error: the following arguments are required: FILE"),
        (["compile", "a.flow", "b.flow"], "flowc: error: unrecognized arguments: b.flow"),
        (
            ["graph", "a.flow", "--format", "png"],
            "flowc graph: error: argument --format: invalid choice: 'png'",
        ),
        (
            ["check", "a.flow", "--format", "xml"],
            "flowc check: error: argument --format: invalid choice: 'xml'",
        ),
        (["fmt", "--tools", "x", "a.flow"], "flowc: error: unrecognized arguments: --tools"),
    ],
)
def test_missing_or_wrong_arguments_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err


def test_entry_exits_with_mains_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["flowc", "check", "does-not-exist.flow"])
    with pytest.raises(SystemExit) as raised:
        entry()
    assert raised.value.code == 2
    assert capsys.readouterr().err == (
        "flowc: error: cannot read `does-not-exist.flow`: No such file or directory\n"
    )


def test_entry_exits_130_on_interrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(argv: list[str] | None = None) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("flowc.cli.main.main", interrupted)
    with pytest.raises(SystemExit) as raised:
        entry()
    assert raised.value.code == 130
