"""State `code` -> review results: the code-review tools `analyze`, `style`, `score`, `refine`.

Importing this module registers the four tools, each under its long and its short name
(`analyze_syntax`/`analyze`, `check_style`/`style`, `score_code`/`score`,
`refine_code`/`refine`), so both `examples/code_review.flow` and the one-liner
`analyze -> style -> score; score ? score<80 -> refine : end` run out of the box.

Each tool reads the Python source under the state key `code`, parses it once, and returns
the keys it updates; it never changes the state it is given and never raises, whatever the
text, except for code over `MAX_CODE_BYTES`, which it refuses (`CodeTooLarge`).  A `code`
that is missing or not a string is reported like code that does not parse.  Parsing is
CPU-bound work in C that holds the GIL, so the tools run in worker processes
(`process=True`), off the event loop.  The rules are in `code_review_rules` and documented
in `docs/rules.md`.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from typing_extensions import NotRequired

from flowc.runtime.registry import register_tool
from flowc.runtime.tools.code_review_fixes import SourceText, apply_edits
from flowc.runtime.tools.code_review_rules import (
    RULES,
    SYNTAX_ERROR_SCORE,
    Finding,
    Issue,
    find_problems,
)

#: The most issues `check_style` lists; `issue_count` always counts them all.
MAX_REPORTED_ISSUES = 200
#: Where the score starts, before each finding's points are taken off.
FULL_SCORE = 100
#: How many findings `refine_code` fixes per call unless told otherwise.
DEFAULT_MAX_FIXES = 10
#: The largest `code` the tools take, in UTF-8 bytes: a review of 1 MiB takes a worker
#: process seconds and about 350 MB.
MAX_CODE_BYTES = 1024 * 1024


class CodeTooLarge(ValueError):
    """`code` over `MAX_CODE_BYTES`: the tools refuse it rather than spend minutes on it."""


_NEWLINE = re.compile(r"\r\n|\r|\n")


# The tools' contracts: the registry reads these annotations, and the compiler checks flows
# against what they say each tool reads and writes.


class CodeState(TypedDict):
    """What `analyze_syntax`, `check_style` and `score_code` read: the Python source."""

    code: str


class RefineState(TypedDict):
    """What `refine_code` reads: the source, and how many refinements came before."""

    code: str
    attempts: NotRequired[int]


class SyntaxProblem(TypedDict):
    """Why `code` does not parse; `line` and `column` are 1-based, None without a position."""

    message: str
    line: int | None
    column: int | None


class SyntaxReport(TypedDict):
    """What `analyze_syntax` writes."""

    syntax_ok: bool
    syntax_error: SyntaxProblem | None


class StyleReport(TypedDict):
    """What `check_style` writes."""

    issues: list[Issue]
    issue_count: int
    style_ok: bool
    style_checked: bool


class ScoreReport(TypedDict):
    """What `score_code` writes."""

    score: int
    score_reason: str


class Fix(TypedDict):
    """One rewrite `refine_code` made, at its position in the code as it was."""

    rule: str
    line: int
    column: int
    fix: str | None


class Refinement(TypedDict):
    """What `refine_code` writes; `code` only when the rewrites changed it."""

    code: NotRequired[str]
    attempts: int
    fixes: list[Fix]
    refine_note: str


@dataclass(frozen=True, slots=True)
class ParsedCode:
    """The state's `code` parsed once: its text and tree, or why there is no tree."""

    text: str
    tree: ast.Module | None
    error: SyntaxProblem | None

    def findings(self) -> list[Finding]:
        """The catalogue's findings; for code that does not parse, the FLW000 finding alone."""
        if self.tree is not None:
            return find_problems(self.tree, self.text)
        assert self.error is not None
        line, column = self.error["line"] or 1, self.error["column"] or 1
        message = f"the code does not parse, so it was not checked: {self.error['message']}"
        return [Finding("FLW000", message, line, column)]


def parse_code(state: Mapping[str, Any]) -> ParsedCode:
    """Parse `state["code"]`; any failure (syntax, null bytes, nesting) becomes `error`.

    Code over `MAX_CODE_BYTES` raises `CodeTooLarge`: the run fails with the limit named.

    The error is `{message, line, column}` with a 1-based line and character column, or
    None for both when the problem has no position.  Warnings about the code (an invalid
    escape sequence, say) are silenced: they concern the code under review, not the run.
    """
    code = state.get("code")
    if not isinstance(code, str):
        what = "the state has no `code`" if code is None else f"`code` is {type(code).__name__}"
        return ParsedCode("", None, _error(f"{what}, not Python source text"))
    _check_size(code)
    null = code.find("\0")
    if null >= 0:  # Python versions word (and raise) this differently: say it the same way
        return ParsedCode(code, None, _error("the code contains a null byte", code, null))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ParsedCode(code, ast.parse(code), None)
    except SyntaxError as error:
        return ParsedCode(code, None, _error(error.msg, line=error.lineno, column=error.offset))
    except UnicodeEncodeError as error:
        message = "the code contains text that is not valid Unicode (a lone surrogate)"
        return ParsedCode(code, None, _error(message, code, error.start))
    except ValueError as error:
        return ParsedCode(code, None, _error(str(error)))
    except (RecursionError, MemoryError):
        return ParsedCode(code, None, _error("the code is nested too deeply to parse"))


def _check_size(code: str) -> None:
    """`CodeTooLarge` for code over `MAX_CODE_BYTES` (counted without encoding when ASCII)."""
    if len(code) <= MAX_CODE_BYTES // 4:
        return
    size = len(code) if code.isascii() else len(code.encode("utf-8", "surrogatepass"))
    if size > MAX_CODE_BYTES:
        raise CodeTooLarge(
            f"`code` is {size:,} bytes; the code-review tools take at most "
            f"{MAX_CODE_BYTES:,} bytes (MAX_CODE_BYTES)"
        )


def _error(
    message: str,
    text: str = "",
    index: int | None = None,
    *,
    line: int | None = None,
    column: int | None = None,
) -> SyntaxProblem:
    """A syntax error object; `index` (into `text`) gives its position if `line` doesn't."""
    if index is not None:
        breaks = [match.end() for match in _NEWLINE.finditer(text, 0, index)]
        line = len(breaks) + 1
        column = index - (breaks[-1] if breaks else 0) + 1
    return {"message": message, "line": line, "column": column}


def _where(error: Mapping[str, Any]) -> str:
    """`line 3, column 7: message`, or the message alone when it has no position."""
    if error["line"] is None:
        return str(error["message"])
    return f"line {error['line']}, column {error['column']}: {error['message']}"


@register_tool(process=True)
def analyze_syntax(state: CodeState) -> SyntaxReport:
    """Check that `code` parses: sets `syntax_ok` and `syntax_error` ({message, line, column}).

    `syntax_error` is None when the code parses, so a stale error from an earlier loop
    iteration does not linger in the state.
    """
    parsed = parse_code(state)
    return {"syntax_ok": parsed.tree is not None, "syntax_error": parsed.error}


@register_tool(process=True)
def check_style(state: CodeState) -> StyleReport:
    """List the catalogue's findings in `code` as `issues`; `style_ok` when there are none.

    Each issue is {rule, message, line, column, fixable}; at most `MAX_REPORTED_ISSUES` are
    listed and `issue_count` counts them all.  Code that does not parse cannot be checked:
    `style_checked` is then false and the one issue is the FLW000 syntax error.
    """
    parsed = parse_code(state)
    findings = parsed.findings()
    return {
        "issues": [finding.as_issue() for finding in findings[:MAX_REPORTED_ISSUES]],
        "issue_count": len(findings),
        "style_ok": not findings,
        "style_checked": parsed.tree is not None,
    }


@register_tool(process=True)
def score_code(state: CodeState) -> ScoreReport:
    """Score `code`: 100 minus each finding's points (10 each), at least 0, as `score`.

    Code that does not parse scores `SYNTAX_ERROR_SCORE` (0).  `score_reason` says how the
    number came about.
    """
    parsed = parse_code(state)
    if parsed.error is not None:
        reason = f"the code does not parse ({_where(parsed.error)}): score {SYNTAX_ERROR_SCORE}"
        return {"score": SYNTAX_ERROR_SCORE, "score_reason": reason}
    findings = parsed.findings()
    lost = sum(RULES[finding.rule].points for finding in findings)
    if not findings:
        return {"score": FULL_SCORE, "score_reason": "no findings"}
    counts = Counter(finding.rule for finding in findings)
    listed = ", ".join(f"{rule} x{count}" for rule, count in sorted(counts.items()))
    reason = f"{FULL_SCORE} - {lost} for {_findings(len(findings))} ({listed})"
    return {"score": max(0, FULL_SCORE - lost), "score_reason": reason}


@register_tool(process=True)
def refine_code(state: RefineState, max_fixes: int = DEFAULT_MAX_FIXES) -> Refinement:
    """Rewrite up to `max_fixes` fixable findings in `code`, first ones first.

    The rewrites (print -> `logging.info`, bare except -> `except Exception`, `== None` ->
    `is None`, ...) replace only the bytes of the construct they fix, plus one inserted
    `import logging` line when needed; every other byte of the code stays as it was.  The
    result is parsed again and kept only if it parses.  Returns the new `code` (only when it
    changed), `attempts` (the state's plus one; missing or not an integer counts as 0), the
    `fixes` made ({rule, line, column, fix}, positions in the code as it was) and a
    `refine_note`.  Code that does not parse is left as it is.  A `max_fixes` that is not
    an integer counts as `DEFAULT_MAX_FIXES`, a negative one as 0.
    """
    attempts = _count(state.get("attempts"), 0) + 1
    parsed = parse_code(state)
    if parsed.tree is None:
        assert parsed.error is not None
        note = f"nothing changed: the code does not parse ({_where(parsed.error)})"
        return {"attempts": attempts, "fixes": [], "refine_note": note}
    limit = max(0, _count(max_fixes, DEFAULT_MAX_FIXES))
    findings = parsed.findings()
    fixable = [finding for finding in findings if finding.fixable]
    chosen = fixable[:limit]
    refined = _rewrite(parsed.text, chosen)
    if refined is None:
        note = "nothing changed: the rewrites could not be made cleanly"
        return {"attempts": attempts, "fixes": [], "refine_note": note}
    fixes: list[Fix] = [
        {"rule": f.rule, "line": f.line, "column": f.column, "fix": RULES[f.rule].fix}
        for f in chosen
    ]
    note = f"fixed {len(chosen)} of {_findings(len(fixable))} refine can fix"
    if not fixable:
        note = "nothing refine can fix"
    elif len(chosen) < len(fixable):
        note += f" (max_fixes={limit})"
    if len(findings) > len(fixable):
        note += f"; {_findings(len(findings) - len(fixable))} left for a person"
    if refined != parsed.text:  # the keys in the order they always had
        return {"attempts": attempts, "fixes": fixes, "code": refined, "refine_note": note}
    return {"attempts": attempts, "fixes": fixes, "refine_note": note}


def _count(value: object, default: int) -> int:
    """`value` if it is an integer (a bool is not), else `default`."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _findings(count: int) -> str:
    """`1 finding`, `3 findings`."""
    return f"{count} finding" + ("" if count == 1 else "s")


def _rewrite(text: str, findings: list[Finding]) -> str | None:
    """`text` with the findings' edits made, or None if that fails or does not parse."""
    if not findings:
        return text
    refined = apply_edits(SourceText(text), (edit for f in findings for edit in f.edits))
    if refined is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(refined)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return refined


register_tool("analyze", process=True)(analyze_syntax)
register_tool("style", process=True)(check_style)
register_tool("score", process=True)(score_code)
register_tool("refine", process=True)(refine_code)
