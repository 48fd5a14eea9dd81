"""The Flow language's front end: text -> AST, and AST -> canonical text."""

from flowc.dsl.diagnostics import Diagnostic, FlowError, Span
from flowc.dsl.formatter import format
from flowc.dsl.parser import parse

__all__ = ["Diagnostic", "FlowError", "Span", "format", "parse"]
