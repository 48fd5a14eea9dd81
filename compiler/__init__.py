"""The Flow compiler: AST -> checked Program -> IR, with diagnostics for every problem."""

from flowc.compiler.pipeline import (
    Checked,
    Compiled,
    check_ir,
    check_program,
    check_source,
    compile_ir,
    compile_source,
)
from flowc.compiler.tools import ToolParam, ToolSpec

__all__ = [
    "Checked",
    "Compiled",
    "ToolParam",
    "ToolSpec",
    "check_ir",
    "check_program",
    "check_source",
    "compile_ir",
    "compile_source",
]

if __name__ != "flowc.compiler":  # this folder imported by its bare name, from a checkout
    raise ImportError(f"import `flowc.compiler`, not `{__name__}`: flowc installs as one namespace")
