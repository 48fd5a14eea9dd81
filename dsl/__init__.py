"""The Flow language's front end: text -> AST, and AST -> canonical text."""

from flowc.dsl.diagnostics import Diagnostic, FlowError, Span
from flowc.dsl.formatter import format
from flowc.dsl.parser import parse

__all__ = ["Diagnostic", "FlowError", "Span", "format", "parse"]

if __name__ != "flowc.dsl":  # this folder imported by its bare name, from a checkout
    raise ImportError(f"import `flowc.dsl`, not `{__name__}`: flowc installs as one namespace")
