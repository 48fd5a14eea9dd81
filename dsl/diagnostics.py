"""Positions and problems: `Span`, `Diagnostic` and the one exception root, `FlowError`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from flowc.dsl.limits import MAX_SHOWN_TOKEN

Severity = Literal["error", "warning"]


class Span(NamedTuple):
    """A range of source text: 1-based lines and columns, the end exclusive.

    A named tuple rather than a dataclass: the parser makes one per token.
    """

    line: int
    column: int
    end_line: int
    end_column: int

    def to(self, other: Span) -> Span:
        """The span from the start of this one to the end of `other`."""
        return Span(self.line, self.column, other.end_line, other.end_column)


#: The span used for problems that belong to the whole text rather than a place in it.
WHOLE_TEXT = Span(1, 1, 1, 1)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a flow: where it is, how bad it is, and what to do about it."""

    severity: Severity
    code: str
    message: str
    span: Span
    help: str | None = None
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        # A long quoted token is cut where every message is made, not in each of them.
        if len(self.message) > MAX_SHOWN_TOKEN:
            object.__setattr__(self, "message", clip_quoted(self.message))
        if self.help is not None and len(self.help) > MAX_SHOWN_TOKEN:
            object.__setattr__(self, "help", clip_quoted(self.help))
        if any(len(note) > MAX_SHOWN_TOKEN for note in self.notes):
            object.__setattr__(self, "notes", tuple(clip_quoted(n) for n in self.notes))

    @property
    def is_error(self) -> bool:
        """True for errors, False for warnings."""
        return self.severity == "error"

    def sort_key(self) -> tuple[int, int, str]:
        """Order diagnostics by position, then code, as every renderer prints them."""
        return (self.span.line, self.span.column, self.code)


def clip_quoted(text: str) -> str:
    """`text` with each backquoted part longer than `MAX_SHOWN_TOKEN` cut, its length said.

    Backquotes pair up in order, as messages write them; an unpaired last one is left as
    it is.
    """
    parts = text.split("`")
    for index in range(1, len(parts) - 1, 2):
        quoted = parts[index]
        if len(quoted) > MAX_SHOWN_TOKEN:
            parts[index] = f"{quoted[:MAX_SHOWN_TOKEN]}…"
            parts[index + 1] = f" ({len(quoted):,} characters){parts[index + 1]}"
    return "`".join(parts)


def error(code: str, message: str, span: Span, help: str | None = None) -> Diagnostic:
    """Build an error diagnostic."""
    return Diagnostic("error", code, message, span, help)


def warning(code: str, message: str, span: Span, help: str | None = None) -> Diagnostic:
    """Build a warning diagnostic."""
    return Diagnostic("warning", code, message, span, help)


class FlowError(Exception):
    """The one exception root: a flow has errors, all of them carried in `diagnostics`."""

    def __init__(self, diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(
            sorted(diagnostics, key=Diagnostic.sort_key)
        )
        first = self.diagnostics[0] if self.diagnostics else None
        summary = (
            f"{first.span.line}:{first.span.column}: {first.code}: {first.message}"
            if first
            else "invalid flow"
        )
        more = len(self.diagnostics) - 1
        super().__init__(summary + (f" (and {more} more)" if more > 0 else ""))

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """Only the diagnostics that are errors."""
        return tuple(d for d in self.diagnostics if d.is_error)
