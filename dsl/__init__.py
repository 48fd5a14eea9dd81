"""The Flow language's front end: text -> AST, and AST -> canonical text."""

from dsl.diagnostics import Diagnostic, FlowError, Span
from dsl.formatter import format
from dsl.parser import parse

__all__ = ["Diagnostic", "FlowError", "Span", "format", "parse"]
