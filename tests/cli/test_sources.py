"""`cli.sources`: bytes -> text, with E002 at the first byte that is not UTF-8."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from flowc.cli.errors import CommandError
from flowc.cli.sources import Source, decode, read_source
from flowc.dsl.diagnostics import WHOLE_TEXT, Span
from flowc.dsl.limits import MAX_SOURCE_BYTES


def test_utf8_decodes_and_keeps_the_bom_for_the_parser() -> None:
    assert decode("\ufeffa -> b\r\n".encode(), "x.flow") == Source("x.flow", "\ufeffa -> b\r\n")


@pytest.mark.parametrize(
    ("data", "span", "message"),
    [
        (b"\xff", Span(1, 1, 1, 2), "byte 0xff (invalid start byte)"),
        (b"a -> b\nb -> \xc3(", Span(2, 6, 2, 7), "byte 0xc3 (invalid continuation byte)"),
        # Columns count characters, not bytes, and start after a BOM.
        ("\ufeffé -> ".encode() + b"\x80", Span(1, 6, 1, 7), "byte 0x80 (invalid start byte)"),
        (b"a -> b\xe2\x82", Span(1, 7, 1, 8), "byte 0xe2 (unexpected end of data)"),
    ],
)
def test_the_first_bad_byte_is_an_e002(data: bytes, span: Span, message: str) -> None:
    source = decode(data, "x.flow")
    assert source.problem is not None
    assert source.problem.code == "E002"
    assert source.problem.span == span
    assert source.problem.message == f"the text is not valid UTF-8: {message}"
    assert "\ufffd" in source.text  # shown with a replacement character under the caret


def test_more_than_the_limit_is_an_e001(tmp_path: Path) -> None:
    path = tmp_path / "huge.flow"
    path.write_bytes(b"#" * (MAX_SOURCE_BYTES + 10))
    source = read_source(str(path))
    assert source.problem is not None
    assert (source.problem.code, source.problem.span) == ("E001", WHOLE_TEXT)
    assert source.problem.message == "the text is more than 1,048,576 bytes, the limit"


def test_a_missing_file_is_a_command_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as raised:
        read_source(str(tmp_path / "nope.flow"))
    assert str(raised.value) == f"cannot read `{tmp_path / 'nope.flow'}`: No such file or directory"


def test_dash_reads_standard_input_as_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"a -> \xff\n"), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    source = read_source("-")
    assert not source.from_file
    assert source.name == "<stdin>"
    assert source.problem is not None
    assert source.problem.span == Span(1, 6, 1, 7)


def test_dash_reads_a_text_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a -> b\n"))
    source = read_source("-")
    assert source == Source("<stdin>", "a -> b\n", None, from_file=False)
