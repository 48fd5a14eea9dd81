"""docs/diagnostics.md's table of common mistakes is what `flowc check` prints, row by row.

Each row gives a mistake's input; the test checks the code, the first line and the help of
the first diagnostic that input gets (or that it is accepted), and that the grades add up.
To rewrite the printed columns after a change to a message, run
`python -m tests.dsl.test_diagnostics_table` and paste its table over the old one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest

from flowc.compiler import check_source
from tests.conftest import fake_tools

DOC = Path(__file__).parents[2] / "docs" / "diagnostics.md"
#: What the table says when an input has no diagnostic at all.
ACCEPTED = "accepted"
NONE = "—"
#: At most this many rows graded B, and none C: the issue's bar for done.
MOST_B = 3


class Row(NamedTuple):
    """One row of the table: a mistake, its input, what flowc prints, and a grade."""

    number: str
    mistake: str
    source: str
    prints: str
    help: str
    grade: str


def _cells(line: str) -> list[str]:
    """The cells of a table line; `\\|` is a `|` inside a cell."""
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [cell.strip().replace("\\|", "|") for cell in cells]


def _code(cell: str) -> str:
    """A cell that is one code span, without its backquotes."""
    assert cell.startswith("`") and cell.endswith("`"), cell
    return cell[1:-1]


def rows(text: str | None = None) -> list[Row]:
    """The rows of the table in docs/diagnostics.md."""
    text = DOC.read_text(encoding="utf-8") if text is None else text
    return [Row(*_cells(line)) for line in text.splitlines() if re.match(r"\| \d+ \|", line)]


def source_of(row: Row) -> str:
    """The input a row shows, its `\\n`s made new lines."""
    return _code(row.source).replace("\\n", "\n")


def printed(source: str) -> tuple[str, str]:
    """What the table shows for `source`: the first diagnostic's first line, and its help."""
    diagnostics = check_source(source, tools=fake_tools()).diagnostics
    if not diagnostics:
        return ACCEPTED, NONE
    first = diagnostics[0]
    return f"{first.severity}[{first.code}]: {first.message}", first.help or NONE


@pytest.mark.parametrize("row", rows(), ids=lambda row: f"{row.number}-{row.mistake}")
def test_each_row_is_what_flowc_prints(row: Row) -> None:
    assert printed(source_of(row)) == (row.prints, row.help)


def test_the_grades_meet_the_bar_and_the_summary_counts_them() -> None:
    table = rows()
    grades = [row.grade for row in table]
    assert set(grades) <= {"A", "B", "C"}
    assert grades.count("C") == 0
    assert grades.count("B") <= MOST_B
    summary = f"{grades.count('A')} A, {grades.count('B')} B, {grades.count('C')} C"
    assert summary in DOC.read_text(encoding="utf-8")
    assert len(table) >= 25


def test_a_pipe_inside_a_cell_is_escaped() -> None:
    assert _cells("| 1 | `a \\|\\| b` | x |") == ["1", "`a || b`", "x"]


def _escaped(text: str) -> str:
    return text.replace("|", "\\|")


def table(text: str | None = None) -> str:
    """The table, its printed columns taken from what flowc prints now."""
    lines = [
        "| # | mistake | input | flowc prints | help | grade |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows(text):
        shown, help_ = printed(source_of(row))
        cells = [row.number, *map(_escaped, [row.mistake, row.source, shown, help_])]
        lines.append("| " + " | ".join([*cells, row.grade]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
