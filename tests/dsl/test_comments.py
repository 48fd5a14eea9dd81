"""Comments survive formatting: above the next statement, or at the end of their line."""

from __future__ import annotations

from flowc.dsl import format, parse

SOURCE = """\
# header comment
flow x   # trailing on header

# about settings
set max_steps = 5
node a = t   # what a does
node b = t


start -> a  # begin
a -> b ? "#not" == x -> end :   # inside a branch
   end
# final words
"""

FORMATTED = """\
# header comment
flow x  # trailing on header

# about settings
set max_steps = 5
node a = t  # what a does
node b = t

start -> a                         # begin
a -> b ? "#not" == x -> end : end  # inside a branch
# final words
"""


def test_comments_are_kept_in_place() -> None:
    assert format(parse(SOURCE)) == FORMATTED


def test_formatting_commented_text_is_idempotent_and_keeps_meaning() -> None:
    assert format(parse(FORMATTED)) == FORMATTED
    assert parse(FORMATTED) == parse(SOURCE)


def test_two_comments_in_one_statement() -> None:
    text = "a ? x -> b :  # one\n  y -> c :  # two\n  end\n"
    assert format(parse(text)) == "# two\na ? x -> b : y -> c : end  # one\n"


def test_only_comments() -> None:
    assert parse("# nothing\n").comments[0].text == "# nothing"
