"""A syntax error and the text around it -> the `help:` line that says what was meant.

People bring habits from other languages: `=` for `==`, `=>` for `->`, `&&` for `and`,
`//` for `#`, Python's `x if c else y`, `True` for `true`, and characters that only look
like ASCII (an en dash, curly quotes).  Each habit is recognised here from the token the
parser could not take, the tokens it would have taken and the text, never by guessing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from lark import Token

from flowc.dsl.ast import POLICY_NAMES
from flowc.dsl.syntax import VALUE_START

#: Python's (and JSON-less languages') spellings of the constants -> Flow's.
PYTHON_CONSTANTS = {"True": "true", "False": "false", "None": "null"}

#: Operators of C-like languages -> Flow's words.
_WORD_OPERATORS = {"&&": "and", "||": "or", "&": "and", "|": "or", "!": "not"}

#: Characters that look like ASCII but are not, and what they look like.  Letters of other
#: scripts that look like Latin ones come from `_LETTERS`; fullwidth forms from NFKC.
_LOOKALIKES = {
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
    "\u2192": "->", "\u21d2": "->", "\u27f6": "->", "\u2794": "->",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u00a0": " ", "\u2007": " ", "\u202f": " ", "\u2009": " ", "\u200a": " ", "\u3000": " ",
    "\u2264": "<=", "\u2265": ">=", "\u2260": "!=", "\u00d7": "*", "\u00f7": "/",
}  # fmt: skip
#: Greek and Cyrillic letters that look like Latin ones, in pairs of strings.
_LETTERS = dict(
    zip(
        "АВЕЗКМНОРСТУХаеорсухіјѕԁԛԝΑΒΕΖΗΙΚΜΝΟΡΤΥΧαικνορτυχ",
        "ABE3KMHOPCTYXaeopcyxijsdqwABEZHIKMNOPTYXaiKvopTuX",
        strict=True,
    )
)
#: Characters that show as nothing at all (zero-width spaces and joiners, a stray BOM).
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff")
_QUOTES = {'"': "\u201c\u201d\u201e\u201f\u00ab\u00bb", "'": "\u2018\u2019\u201a\u201b\u2032"}

#: `NODE ? THEN if CONDITION else OTHERWISE`, Python's conditional expression in a branch.
_PYTHON_IF = re.compile(
    r"(?P<head>[^?#]*\?)\s*(?P<then>[A-Za-z_]\w*)\s+if\s+(?P<condition>.+?)"
    r"\s+else\s+(?P<otherwise>[A-Za-z_]\w*)\s*(?:#.*)?$"
)
_BRANCH_FORM = "a branch is `NODE ? CONDITION -> TARGET : ELSE`"
_VALUE_START = VALUE_START
_SETTINGS = frozenset(["max_steps", *POLICY_NAMES]) - {"on_error"}  # a node policy only


@dataclass(frozen=True, slots=True)
class Hint:
    """What to tell a person about a syntax error.

    `help` is the help line; `found`, when given, names what was found in the message
    instead of the one token or character (`` `=>` ``); `width` is then its length.
    """

    help: str
    found: str | None = None
    width: int = 1


def character_hint(text: str, position: int) -> Hint | None:
    """The hint for a character that starts no token (`&&`, `!`, an en dash), if there is one."""
    char = text[position]
    for operator in ("&&", "||", "&", "|"):
        if text.startswith(operator, position):
            word = _WORD_OPERATORS[operator]
            return Hint(f"use `{word}` instead of `{operator}`", f"`{operator}`", len(operator))
    if char == "!":
        return Hint("use `not` instead of `!` (`!=` is fine)", "`!`")
    if char.isascii():
        return None
    named = f"character `{_shown(char)}` ({code_point(char)})"
    if char in _INVISIBLE:
        return Hint("it takes no room on the screen: delete it", named)
    looks = lookalike(char)
    if looks is None:
        return Hint(
            "outside strings and comments, a flow is written in ASCII: names are letters "
            "`A-Z`, `a-z`, digits and `_`",
            named,
        )
    if looks == " ":
        return Hint("it looks like a space but is not: type a plain space", named)
    return Hint(
        f"it looks like `{looks}` but is not: write `{_meant(text, position, looks)}`", named
    )


def code_point(char: str) -> str:
    """`U+2013 EN DASH`: a character's code point and Unicode name."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


def lookalike(char: str) -> str | None:
    """The ASCII text that `char` looks like (an en dash looks like `-`), if it looks like any."""
    if char in _LOOKALIKES:
        return _LOOKALIKES[char]
    if char in _LETTERS:
        return _LETTERS[char]
    folded = unicodedata.normalize("NFKC", char)
    if folded != char and folded.isascii() and folded.isprintable():
        return folded
    return None


def _meant(text: str, position: int, looks: str) -> str:
    """What to write instead of the lookalike at `position`: the whole `->` or string."""
    following = text[position + 1 : position + 2]
    if looks == "-" and following == ">":
        return "->"
    if looks.isalpha():  # the whole word, every lookalike letter in it replaced
        start, end = position, position + 1
        while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
            start -= 1
        while end < len(text) and (text[end].isalnum() or text[end] == "_"):
            end += 1
        return "".join(c if c.isascii() else lookalike(c) or c for c in text[start:end])
    if looks in _QUOTES:
        line_end = text.find("\n", position)
        rest = text[position + 1 : None if line_end < 0 else line_end]
        close = min((i for i, c in enumerate(rest) if c in _QUOTES[looks]), default=-1)
        if close >= 0 and looks not in rest[:close]:
            return f"{looks}{rest[:close]}{looks}"
    return looks


def _shown(char: str) -> str:
    return repr(char)[1:-1] if not char.isprintable() or char.isspace() else char


def token_hint(
    token: Token, previous: Token | None, acceptable: set[str], text: str
) -> Hint | None:
    """The hint for a token the parser could not take here, if there is one."""
    start = token.start_pos if token.start_pos is not None else 0
    end = token.end_pos if token.end_pos is not None else start
    after = text[end : end + 1]
    kind = token.type
    if kind == "EQUALS":
        return _equals_hint(previous, acceptable, text, end, after)
    if kind == "SLASH" and text.startswith(("//", "/*"), start):
        return Hint("`#` starts a comment", f"`{text[start : start + 2]}`", 2)
    if kind == "SLASH" and previous is not None and previous.type == "SLASH":
        return Hint("Flow has no `//`: `/` divides, and `#` starts a comment")
    if kind == "ARROW" and previous is not None and previous.type == "ARROW":
        return Hint("one `->` goes from a node to the next: remove this one")
    if kind == "GT" and previous is not None and previous.type == "LT":
        return Hint("did you mean `!=`?")
    if kind == "COLON" and "EQUALS" in acceptable:
        return Hint("did you mean `=`?")
    if kind == "COMMA" and "ARROW" in acceptable and "RPAR" not in acceptable:
        return Hint(_several_next_nodes(token, text))
    if previous is not None and previous.type == "NAME" and previous.value == "if":
        return Hint(f"Flow has no `if`: {_BRANCH_FORM}")
    if kind == "STRING" and previous is not None and previous.type == "FLOW":
        name = str(token.value)[1:-1]
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            return Hint(f"a sub-flow is named without quotes: `flow {name}`")
    line_start = text.rfind("\n", 0, start) + 1
    if kind == "NAME" and re.search(
        r"\bfor\s+\w+\s+in\s+\w+\s*:\s*flow\s*$", text[line_start:start]
    ):
        # `for x in xs: flow review`: `flow` was read as the map's tool.
        return Hint(
            "a map runs a tool once per item, not a sub-flow: run the sub-flow in a node of its own"
        )
    if kind == "NAME":
        hint = _name_hint(token, previous, acceptable, text)
        if hint is not None:
            return hint
    if kind in ("START", "END"):
        line_end = text.find("\n", end)
        hint = _forgotten_arrow(token, acceptable, text[end : None if line_end < 0 else line_end])
        if hint is not None:
            return hint
    if acceptable == {"COLON"}:
        return Hint(_ELSE_HELP)
    return _list_hint(kind, acceptable)


def end_hint(acceptable: set[str], previous: Token | None) -> str | None:
    """The help for a statement that the end of the text cut short, if there is one."""
    if acceptable == {"COLON"}:
        return _ELSE_HELP
    if previous is not None and previous.type == "ARROW":
        return _TARGET_HELP
    return None


_ELSE_HELP = "a branch ends with `: TARGET`, where the run goes when no condition holds"
_TARGET_HELP = "after `->`, name the node to go to, or `end` to stop there"


def _equals_hint(
    previous: Token | None, acceptable: set[str], text: str, end: int, after: str
) -> Hint | None:
    if after == ">":  # `=>`: an arrow, or `>=` in a comparison
        line_end = text.find("\n", end)
        rest = text[end : None if line_end < 0 else line_end].split(":")[0]
        if "ARROW" in acceptable and not ("EQ" in acceptable and "->" in rest):
            return Hint("did you mean `->`?", "`=>`", 2)
        if "EQ" in acceptable:
            return Hint("did you mean `>=`?", "`=>`", 2)
    if after == "<" and "EQ" in acceptable:
        return Hint("did you mean `<=`?", "`=<`", 2)
    if previous is not None and previous.type == "EQ":
        return Hint("Flow compares with `==`; there is no `===`")
    if "EQ" in acceptable:
        return Hint("did you mean `==`?")
    if "COLON" in acceptable:
        return Hint("did you mean `:`?")
    if {"ARROW", "QMARK"} <= acceptable and previous is not None and previous.type == "NAME":
        line_end = text.find("\n", end)
        given = text[end : None if line_end < 0 else line_end].split("#")[0].strip()
        if previous.value in _SETTINGS:
            return Hint(f"to give a setting, write `set {previous.value} = {given or 'VALUE'}`")
        return Hint(f"to bind a node to a tool, write `node {previous.value} = {given or 'TOOL'}`")
    return None


def _name_hint(
    token: Token, previous: Token | None, acceptable: set[str], text: str
) -> Hint | None:
    value = str(token.value)
    if value in PYTHON_CONSTANTS and acceptable & _VALUE_START:
        return Hint(f"write `{PYTHON_CONSTANTS[value]}`")
    if value == "if":
        return Hint(_python_if(token, text))
    if value == "else" and "COLON" in acceptable:
        return Hint("use `:` instead of `else`")
    if value == "elif" and "COLON" in acceptable:
        return Hint("use `:` instead of `elif`, as in `: CONDITION -> TARGET`")
    line_end = text.find("\n", token.end_pos or 0)
    rest = text[token.end_pos : None if line_end < 0 else line_end]
    if previous is not None and previous.type == "EQUALS" and acceptable & _VALUE_START:
        line_start = text.rfind("\n", 0, token.start_pos or 0) + 1
        if re.match(r"\s*set\s+on_error\s*=", text[line_start:]):
            return Hint(
                f"`on_error` is a node's policy: `node NAME = TOOL with on_error = {value}`"
            )
    if value == "is" and "EQ" in acceptable:
        found = re.match(r"\s+(not\s+)?(\w+)?", rest)
        operator, was = ("!=", "is not") if found and found[1] else ("==", "is")
        constant = PYTHON_CONSTANTS.get(found[2] or "") if found else None
        if constant is not None:
            return Hint(f"write `{operator} {constant}`")
        return Hint(f"use `{operator}` instead of `{was}`")
    if value.lower() in ("and", "or", "not", "in") and value.upper() in acceptable:
        return Hint(f"keywords are lowercase: write `{value.lower()}`")
    if {"ARROW", "QMARK"} <= acceptable and "AND" not in acceptable and previous is not None:
        return Hint(f"did you forget `->` between `{previous.value}` and `{value}`?")
    return _forgotten_arrow(token, acceptable, rest)


def _forgotten_arrow(token: Token, acceptable: set[str], rest: str) -> Hint | None:
    """`score ? x > 1 end : refine`: a node name that ends the arm right after a condition."""
    if "ARROW" in acceptable and "AND" in acceptable and re.match(r"\s*(?:[:#]|$)", rest):
        return Hint(f"did you forget `->` before `{token.value}`?")
    return None


_SEVERAL = re.compile(r"(?:.*->)?\s*(\w+)\s*->\s*(\w+(?:\s*,\s*\w+)+)\s*(?:#.*)?$")


def _several_next_nodes(token: Token, text: str) -> str:
    """`a -> b, c`: parallel branches run both; a branch goes to one of them."""
    line_start = text.rfind("\n", 0, token.start_pos or 0) + 1
    line_end = text.find("\n", line_start)
    found = _SEVERAL.match(text[line_start : None if line_end < 0 else line_end])
    both = "`NODE -> [b, c] -> JOIN`"
    if found is not None:
        names = ", ".join(name.strip() for name in found[2].split(","))
        both = f"`{found[1]} -> [{names}] -> JOIN`"
    return (
        f"to run them at the same time, write parallel branches: {both}; to go to one of "
        "them, branch: `NODE ? CONDITION -> TARGET : ELSE`"
    )


def _python_if(token: Token, text: str) -> str:
    """The help for Python's `x if c else y`: the branch it means, when the line says it."""
    line_start = text.rfind("\n", 0, token.start_pos or 0) + 1
    line_end = text.find("\n", line_start)
    found = _PYTHON_IF.match(text[line_start : None if line_end < 0 else line_end])
    if found is None:
        return f"Flow has no `if`: {_BRANCH_FORM}"
    head = " ".join(found["head"].split())
    branch = f"{head} {found['condition']} -> {found['then']} : {found['otherwise']}"
    return f"Flow has no `if`; write the branch `{branch}`"


def _list_hint(kind: str, acceptable: set[str]) -> Hint | None:
    """A missing `,` between the arguments, items or members of a bracket."""
    if "COMMA" not in acceptable or kind not in ("NAME", "INT", "FLOAT", "STRING", "_NL"):
        return None
    for closer, items in (("RPAR", "arguments"), ("RSQB", "items"), ("RBRACE", "members")):
        if closer in acceptable:
            if kind == "_NL":
                shown = {"RPAR": ")", "RSQB": "]", "RBRACE": "}"}[closer]
                return Hint(
                    f"end the line with `,` to go on with the {items}, or close with `{shown}`"
                )
            return Hint(f"put `,` between {items}")
    return None
