"""`flowc token new` and `flowc token hash`: a token and the line the server reads for it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from flowc.cli.main import main
from flowc.server.auth import read_token_file, token_digest, token_problem

EXPLAINED = (
    "flowc: the first line is the token, for the client (it is not kept anywhere); the "
    "second goes into FLOWC_API_TOKENS_FILE\n"
)


def test_new_prints_a_token_and_its_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["token", "new", "--name", "ci runner"]) == 0
    out, err = capsys.readouterr()
    token, line = out.splitlines()
    assert err == EXPLAINED
    assert (len(token), token_problem(token)) == (43, None)  # 32 random bytes, URL-safe
    assert line == f"sha256:{token_digest(token).hex()} ci runner"
    path = tmp_path / "tokens"
    path.write_text(line + "\n", encoding="utf-8")
    (read,) = read_token_file(path)
    assert (read.name, read.digest) == ("ci runner", token_digest(token))
    assert main(["token", "new"]) == 0
    again, unnamed = capsys.readouterr().out.splitlines()
    assert again != token
    assert unnamed == f"sha256:{token_digest(again).hex()}"


@pytest.mark.parametrize("stdin", ["abc", "abc\n", "abc\r\n\n"])
def test_hash_reads_the_token_from_stdin(
    stdin: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert main(["token", "hash", "--name", "ops"]) == 0
    assert capsys.readouterr() == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad ops\n",
        "",
    )


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        ([], "", 'no token on stdin: `printf %s "$TOKEN" | flowc token hash`'),
        ([], "a\nb\n", "stdin holds more than one line: give one token at a time"),
        (
            [],
            "two words\n",
            "the token on stdin holds a character other than letters, digits and `-._~+/` "
            "(`=` at the end)",
        ),
        (
            ["--name", " padded"],
            "abc",
            "--name must be printable text without spaces at either end",
        ),
        (["--name", "n" * 101], "abc", "--name is longer than 100 characters"),
    ],
)
def test_hash_refuses_what_is_not_one_token(
    argv: list[str],
    stdin: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert main(["token", "hash", *argv]) == 2
    assert capsys.readouterr() == ("", f"flowc: error: {message}\n")
