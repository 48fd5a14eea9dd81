"""`flowc fmt`: canonical rewrites, `--check`, stdin, and files it must leave alone."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from flowc.cli.main import main
from flowc.dsl.comments import find_comments
from flowc.dsl.limits import MAX_SOURCE_BYTES
from tests.cli.conftest import WriteFile
from tests.cli.test_check import one_mebibyte, run_capped

MESSY = "analyze->score ;score?score<80->refine:end\nrefine   ->analyze\n"
CANONICAL = "analyze -> score\nscore ? score < 80 -> refine : end\nrefine -> analyze\n"


def test_fmt_rewrites_a_file_in_the_canonical_layout(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_file("messy.flow", MESSY)
    assert main(["fmt", "messy.flow"]) == 0
    assert path.read_bytes() == CANONICAL.encode()
    assert capsys.readouterr() == ("", "")


def test_fmt_leaves_a_canonical_file_untouched(write_file: WriteFile) -> None:
    path = write_file("tidy.flow", CANONICAL)
    os.utime(path, (1_000_000, 1_000_000))
    assert main(["fmt", "tidy.flow"]) == 0
    assert path.stat().st_mtime == 1_000_000  # not even rewritten with the same bytes


def test_fmt_drops_the_bom_and_crlf_line_ends(write_file: WriteFile) -> None:
    path = write_file("windows.flow", "\ufeff" + CANONICAL.replace("\n", "\r\n"))
    assert main(["fmt", "windows.flow"]) == 0
    assert path.read_bytes() == CANONICAL.encode()


def test_check_lists_the_files_that_would_change_and_writes_nothing(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    messy = write_file("messy.flow", MESSY)
    write_file("tidy.flow", CANONICAL)
    assert main(["fmt", "--check", "tidy.flow", "messy.flow"]) == 1
    assert capsys.readouterr() == ("messy.flow\n", "")
    assert messy.read_text() == MESSY


def test_check_passes_on_canonical_files(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("tidy.flow", CANONICAL)
    assert main(["fmt", "--check", "tidy.flow"]) == 0
    assert capsys.readouterr() == ("", "")


def test_stdin_is_formatted_to_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(MESSY))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr() == (CANONICAL, "")


def test_canonical_stdin_is_still_echoed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(CANONICAL))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr() == (CANONICAL, "")


def test_check_on_stdin_names_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(MESSY))
    assert main(["fmt", "--check", "-"]) == 1
    assert capsys.readouterr() == ("<stdin>\n", "")


def test_a_file_with_syntax_errors_is_left_alone(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_file("broken.flow", "analyze ->\n")
    assert main(["fmt", "broken.flow"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("broken.flow:1:11: error[E010]: ")
    assert err.endswith("broken.flow: 1 error, 0 warnings\n")
    assert path.read_text() == "analyze ->\n"


def test_semantic_errors_do_not_stop_formatting(write_file: WriteFile) -> None:
    path = write_file("odd.flow", "a->b\nb->a\n")  # a loop that never ends: still formattable
    assert main(["fmt", "odd.flow"]) == 0
    assert path.read_text() == "a -> b\nb -> a\n"


def test_comments_are_kept(write_file: WriteFile) -> None:
    text = "analyze->score\n\n# why we score\nscore -> end  # done\n"
    path = write_file("commented.flow", text)
    assert main(["fmt", "commented.flow"]) == 0
    assert path.read_text() == "analyze -> score\n\n# why we score\nscore -> end  # done\n"


def test_invalid_utf8_is_not_formatted(
    tmp_path: Path, write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "latin1.flow").write_bytes(b"a -> b\nb -> \xe9\n")
    assert main(["fmt", "latin1.flow"]) == 1
    assert capsys.readouterr().err.startswith(
        "latin1.flow:2:6: error[E002]: the text is not valid UTF-8: byte 0xe9"
    )
    assert (tmp_path / "latin1.flow").read_bytes() == b"a -> b\nb -> \xe9\n"


def test_a_missing_file_exits_2_after_formatting_the_rest(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_file("messy.flow", MESSY)
    assert main(["fmt", "missing.flow", "messy.flow"]) == 2
    assert capsys.readouterr() == (
        "",
        "flowc: error: cannot read `missing.flow`: No such file or directory\n",
    )
    assert path.read_text() == CANONICAL


def test_an_unwritable_file_exits_2(
    write_file: WriteFile, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_file("messy.flow", MESSY)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # Tests run as root in CI, where file modes do not stop writes: fail the creation itself.
    monkeypatch.setattr("flowc.cli.fmt.tempfile.mkstemp", refuse)
    assert main(["fmt", "messy.flow"]) == 2
    assert capsys.readouterr().err == (
        "flowc: error: cannot write `messy.flow`: Permission denied\n"
    )
    assert path.read_text() == MESSY


def test_a_write_that_fails_half_way_leaves_the_file_as_it_was(
    tmp_path: Path,
    write_file: WriteFile,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_file("messy.flow", MESSY)

    def disk_full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("flowc.cli.fmt.os.fsync", disk_full)  # after the bytes were handed over
    assert main(["fmt", "messy.flow"]) == 2
    assert capsys.readouterr().err == (
        "flowc: error: cannot write `messy.flow`: No space left on device\n"
    )
    assert path.read_text() == MESSY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["messy.flow"]  # no leftovers


def test_a_rewritten_file_keeps_its_permissions_and_its_link(
    tmp_path: Path, write_file: WriteFile
) -> None:
    path = write_file("messy.flow", MESSY)
    path.chmod(0o640)
    (tmp_path / "link.flow").symlink_to("messy.flow")
    assert main(["fmt", "link.flow"]) == 0
    assert (tmp_path / "link.flow").is_symlink()
    assert path.read_text() == CANONICAL
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    ("text", "positions"),
    [
        ("a -> b\n", []),
        ("# head\na -> b # tail\n", [(1, 1), (2, 8)]),
        ('a ? x == "#" -> b : c # real\n', [(1, 23)]),
        ("a ? x == '\\'#' -> b : c\n", []),
        ("\ufeff# after a BOM\n", [(1, 1)]),
    ],
)
def test_comment_positions_skip_hashes_in_strings(
    text: str, positions: list[tuple[int, int]]
) -> None:
    assert [(c.line, c.column) for c in find_comments(text)] == positions


# ------------------------------------------------------------------ the size limit


def test_fmt_refuses_a_file_whose_canonical_text_would_be_over_the_limit(
    write_file: WriteFile, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A tab in a string is written `\t`: 600,000 of them are 1.2 MB once formatted.
    text = 'set s = "' + "\t" * 600_000 + '"\n'
    path = write_file("tabs.flow", text)
    too_large = (
        "flowc: error: {}: not formatted: the formatted text would be 1,200,011 bytes; "
        f"the limit is {MAX_SOURCE_BYTES:,} bytes\n"
    )
    for args in (["fmt", "tabs.flow"], ["fmt", "--check", "tabs.flow"]):
        assert main(args) == 2
        assert capsys.readouterr() == ("", too_large.format("tabs.flow"))
    assert path.read_text() == text
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["fmt", "-"]) == 2
    assert capsys.readouterr() == ("", too_large.format("<stdin>"))


def test_fmt_of_a_mebibyte_of_commented_lines_runs_in_bounded_memory(tmp_path: Path) -> None:
    text = one_mebibyte("", lambda i: f"n{i:06d} -> end  # note {i:06d}\n", "")
    path = tmp_path / "notes.flow"
    path.write_text(text)
    done = run_capped(tmp_path, "fmt", "notes.flow")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert path.read_text() == text  # already canonical: every comment where it was
    path.write_text(text.replace("  #", " #"))  # the comments are no longer aligned
    done = run_capped(tmp_path, "fmt", "notes.flow")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert path.read_text() == text
