"""`flowc check`: exit codes, every `--format`, stdin, and files that cannot be read."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from flowc.cli.main import main
from flowc.cli.tool_loading import TOOLS_VARIABLE
from flowc.dsl.limits import MAX_SHOWN_DIAGNOSTICS, MAX_SHOWN_LINE, MAX_SOURCE_BYTES
from tests.cli.conftest import CLEAN_FLOW, WriteFile

BAD_FLOW = """\
node fix = refin(max_fixes = 3)
analyze -> fix
fix -> end
node lonely = score
"""

BAD_TEXT = """\
bad.flow:1:12: error[E201]: unknown tool `refin`
  1 | node fix = refin(max_fixes = 3)
    |            ^^^^^
  help: did you mean `refine`?

bad.flow:4:1: warning[W503]: node `lonely` is declared but never used
  4 | node lonely = score
    | ^^^^^^^^^^^^^^^^^^^
  help: route to it (`... -> lonely`) or remove the declaration

bad.flow: 1 error, 1 warning
"""

WARN_TEXT = """\
warn.flow:1:12: warning[W502]: node `score` has no outgoing edge, so the run ends there
  1 | analyze -> score
    |            ^^^^^
  help: write `score -> end` to say so

warn.flow: 0 errors, 1 warning
"""


@pytest.fixture
def files(write_file: WriteFile, tools_path: Path) -> list[str]:
    write_file("clean.flow", CLEAN_FLOW)
    write_file("bad.flow", BAD_FLOW)
    write_file("warn.flow", "analyze -> score\n")
    return ["--tools", str(tools_path)]


def test_a_clean_file_prints_nothing_and_exits_0(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "clean.flow", *files]) == 0
    assert capsys.readouterr() == ("", "")


def test_warnings_alone_are_printed_and_exit_0(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "warn.flow", *files]) == 0
    assert capsys.readouterr() == (WARN_TEXT, "")


def test_errors_exit_1_and_files_are_separated_by_a_blank_line(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "bad.flow", "clean.flow", "warn.flow", *files]) == 1
    assert capsys.readouterr() == (BAD_TEXT + "\n" + WARN_TEXT, "")


def test_json_is_one_list_over_all_files(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--format", "json", "bad.flow", "warn.flow", *files]) == 1
    found = json.loads(capsys.readouterr().out)
    assert [(d["file"], d["line"], d["column"], d["code"]) for d in found] == [
        ("bad.flow", 1, 12, "E201"),
        ("bad.flow", 4, 1, "W503"),
        ("warn.flow", 1, 12, "W502"),
    ]
    assert found[0] == {
        "file": "bad.flow",
        "line": 1,
        "column": 12,
        "end_line": 1,
        "end_column": 17,
        "severity": "error",
        "code": "E201",
        "message": "unknown tool `refin`",
        "help": "did you mean `refine`?",
    }


def test_json_for_clean_files_is_an_empty_list(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--format", "json", "clean.flow", *files]) == 0
    assert capsys.readouterr().out == "[]\n"


def test_github_prints_one_annotation_per_diagnostic(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--format", "github", "bad.flow", "warn.flow", *files]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "::error file=bad.flow,line=1,col=12,endLine=1,endColumn=17,title=E201::"
        "unknown tool `refin`%0Adid you mean `refine`?",
        "::warning file=bad.flow,line=4,col=1,endLine=4,endColumn=20,title=W503::"
        "node `lonely` is declared but never used%0A"
        "route to it (`... -> lonely`) or remove the declaration",
        "::warning file=warn.flow,line=1,col=12,endLine=1,endColumn=17,title=W502::"
        "node `score` has no outgoing edge, so the run ends there%0A"
        "write `score -> end` to say so",
    ]


def test_sarif_is_a_sarif_2_1_0_log(files: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--format", "sarif", "bad.flow", "warn.flow", *files]) == 1
    log = json.loads(capsys.readouterr().out)
    assert log["version"] == "2.1.0"
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    (run,) = log["runs"]
    assert run["tool"]["driver"]["name"] == "flowc"
    assert run["tool"]["driver"]["rules"] == [{"id": "E201"}, {"id": "W502"}, {"id": "W503"}]
    assert run["columnKind"] == "unicodeCodePoints"
    assert [(r["ruleId"], r["ruleIndex"], r["level"]) for r in run["results"]] == [
        ("E201", 0, "error"),
        ("W503", 2, "warning"),
        ("W502", 1, "warning"),
    ]
    assert run["results"][0]["message"] == {
        "text": "unknown tool `refin`\nhelp: did you mean `refine`?"
    }
    assert run["results"][0]["locations"] == [
        {
            "physicalLocation": {
                "artifactLocation": {"uri": "bad.flow"},
                "region": {"startLine": 1, "startColumn": 12, "endLine": 1, "endColumn": 17},
            }
        }
    ]


def test_sarif_gives_absolute_paths_as_file_uris(
    files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.flow"
    assert main(["check", "--format", "sarif", str(path), *files]) == 1
    result = json.loads(capsys.readouterr().out)["runs"][0]["results"][0]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == path.as_uri()


def test_standard_input_is_named_stdin(
    files: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("analyze -> score\n"))
    assert main(["check", "-", *files]) == 0
    assert capsys.readouterr().out == WARN_TEXT.replace("warn.flow", "<stdin>")


def test_a_missing_file_exits_2_and_the_others_are_still_checked(
    files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "missing.flow", "warn.flow", *files]) == 2
    out, err = capsys.readouterr()
    assert err == "flowc: error: cannot read `missing.flow`: No such file or directory\n"
    assert out == WARN_TEXT


def test_a_directory_exits_2(
    files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "flows").mkdir()
    assert main(["check", "flows", *files]) == 2
    assert capsys.readouterr() == ("", "flowc: error: cannot read `flows`: Is a directory\n")


def test_invalid_utf8_is_an_e002_at_the_first_bad_byte(
    files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "latin1.flow").write_bytes(b"analyze -> score\nscore ? name == 'caf\xe9' -> end\n")
    assert main(["check", "latin1.flow", *files]) == 1
    assert capsys.readouterr() == (
        "latin1.flow:2:21: error[E002]: the text is not valid UTF-8: "
        "byte 0xe9 (invalid continuation byte)\n"
        "  2 | score ? name == 'caf\ufffd' -> end\n"
        "    |                     ^\n"
        "  help: save the file as UTF-8\n"
        "\n"
        "latin1.flow: 1 error, 0 warnings\n",
        "",
    )


def test_without_tools_every_tool_is_unknown(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("one.flow", "node a = analyze\na -> end\n")
    assert main(["check", "one.flow"]) == 1
    assert capsys.readouterr().out == (
        "one.flow:1:10: error[E201]: unknown tool `analyze`\n"
        "  1 | node a = analyze\n"
        "    |          ^^^^^^^\n"
        "\n"
        "one.flow: 1 error, 0 warnings\n"
    )


def test_syntax_errors_are_reported_not_raised(
    files: list[str], write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("syntax.flow", "analyze ->\n")
    assert main(["check", "syntax.flow", *files]) == 1
    out = capsys.readouterr().out
    # The wording belongs to the parser and is tested there, word for word.
    assert out.startswith("syntax.flow:1:11: error[E010]: expected a node name after `->`")
    assert out.endswith("syntax.flow: 1 error, 0 warnings\n")


# ------------------------------------------------------- bounded output, bounded memory


def test_a_long_line_is_cut_around_the_span_with_the_caret_under_it(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    chain = " -> ".join(f"n{i:03d}" for i in range(60))  # 418 characters; every node unknown
    write_file("long.flow", f"{chain} -> end\n")
    main(["check", "long.flow"])
    blocks = capsys.readouterr().out.split("\n\n")
    assert blocks[0] == (
        "long.flow:1:1: error[E201]: unknown tool `n000` "
        "(a node without a `node` declaration runs the tool of its name)\n"
        "  1 | n000 -> n001 -> n002 -> n003 -> n004 -> n005 -> n006 -> n007 -> n008 -> n009 -> "
        "n010 -> n011 -> n012 -> n013 -> n014 -> …\n"
        "    | ^^^^\n"
        "  help: declare it: `node n000 = TOOL`"
    )
    # The window starts 30 characters before the span, and is 120 characters wide.
    assert blocks[30] == (
        "long.flow:1:241: error[E201]: unknown tool `n030` "
        "(a node without a `node` declaration runs the tool of its name)\n"
        "  1 | …26 -> n027 -> n028 -> n029 -> n030 -> n031 -> n032 -> n033 -> n034 -> n035 -> "
        "n036 -> n037 -> n038 -> n039 -> n040 -> n0…\n"
        "    | " + " " * 31 + "^^^^\n"
        "  help: declare it: `node n030 = TOOL`"
    )
    # Near the end of the line, the window ends with it.
    assert blocks[59] == (
        "long.flow:1:473: error[E201]: unknown tool `n059` "
        "(a node without a `node` declaration runs the tool of its name)\n"
        "  1 | … -> n046 -> n047 -> n048 -> n049 -> n050 -> n051 -> n052 -> n053 -> n054 -> "
        "n055 -> n056 -> n057 -> n058 -> n059 -> end\n"
        "    | " + " " * 109 + "^^^^\n"
        "  help: declare it: `node n059 = TOOL`"
    )


def test_at_most_a_hundred_diagnostics_are_printed_and_the_rest_counted(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("many.flow", "".join(f"n{i} ->\n" for i in range(150)) + "end\n")
    write_file("few.flow", "a -> end\n")
    assert main(["check", "many.flow", "few.flow"]) == 1
    out = capsys.readouterr().out
    assert out.count("error[E201]") == MAX_SHOWN_DIAGNOSTICS + 1
    assert "many.flow:100:1: error[E201]: unknown tool `n99`" in out
    assert "n100" not in out
    assert out.endswith(
        "… and 50 more errors not shown\n\n"
        "many.flow: 150 errors, 0 warnings\n\n"
        "few.flow:1:1: error[E201]: unknown tool `a` "
        "(a node without a `node` declaration runs the tool of its name)\n"
        "  1 | a -> end\n"
        "    | ^\n"
        "  help: declare it: `node a = TOOL`\n\n"
        "few.flow: 1 error, 0 warnings\n"
    )


@pytest.mark.parametrize("format", ["json", "github", "sarif"])
def test_machine_formats_show_a_hundred_per_file_and_count_the_rest_on_stderr(
    format: str, write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("many.flow", "".join(f"n{i} ->\n" for i in range(150)) + "end\n")
    write_file("few.flow", "a -> end\n")
    assert main(["check", "--format", format, "many.flow", "few.flow"]) == 1
    out, err = capsys.readouterr()
    assert out.count("E201") >= MAX_SHOWN_DIAGNOSTICS + 1
    assert "n100" not in out and "few.flow" in out
    assert err == "many.flow: … and 50 more errors not shown (the first 100 are)\n"
    if format == "json":
        assert len(json.loads(out)) == MAX_SHOWN_DIAGNOSTICS + 1


#: `flowc ARGS...` in a process whose address space the kernel caps at `cap` bytes.
CAPPED = """\
import resource, sys
cap = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from flowc.cli.main import main
sys.exit(main(sys.argv[2:]))
"""
#: The cap: a 1 MiB flow needs under 250 MB; before output was bounded, one took 22.9 GB.
MEMORY_CAP = 512 * 1024 * 1024


def run_capped(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `flowc ARGS...` in `folder` under `MEMORY_CAP`, with only the built-in tools."""
    env = {k: v for k, v in os.environ.items() if k != TOOLS_VARIABLE}
    return subprocess.run(
        [sys.executable, "-c", CAPPED, str(MEMORY_CAP), *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=100,
    )


def one_mebibyte(head: str, link: Callable[[int], str], tail: str) -> str:
    """`head`, then `link(0)`, `link(1)`, ... as long as the text stays within 1 MiB."""
    parts, size, index = [head], len(head) + len(tail), 0
    while size + len(piece := link(index)) <= MAX_SOURCE_BYTES:
        parts.append(piece)
        size += len(piece)
        index += 1
    return "".join(parts) + tail


@pytest.mark.parametrize(
    ("head", "link", "count"),
    [
        # one routing rule per arrow: a diagnostic each, all on the same 1 MiB line (and no
        # E401 for the loop `a -> a`: it follows from the conflict)
        ("node a = analyze\n", "a -> ", "209,710 errors"),
        # a node per arrow, each an unknown tool that asks for a suggestion; and the chain
        # is longer than the default max_steps (E402)
        ("", "n{:05d} -> ", "104,416 errors"),
    ],
)
def test_check_on_a_pathological_mebibyte_prints_a_bounded_report_in_bounded_memory(
    tmp_path: Path, head: str, link: str, count: str
) -> None:
    text = one_mebibyte(head, link.format, "end\n")
    (tmp_path / "big.flow").write_text(text)
    done = run_capped(tmp_path, "check", "big.flow")
    assert (done.returncode, done.stderr) == (1, "")
    assert len(done.stdout) < 60_000  # a hundred diagnostics of a few hundred characters
    assert done.stdout.count(": error[") == MAX_SHOWN_DIAGNOSTICS
    assert done.stdout.endswith(f" not shown\n\nbig.flow: {count}, 0 warnings\n")
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) < 2 * MAX_SHOWN_LINE
