"""`flowc check` stays light: it never imports the server's stack, nor pydantic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import CLEAN_FLOW, WriteFile

HEAVY = ("fastapi", "sqlmodel", "sqlalchemy", "asyncpg", "uvicorn", "pydantic")

# Run one command in a fresh interpreter; print its exit code and the heavy modules loaded.
# The built-in pack is loaded as in real use when it exists; until it does, it is skipped.
SCRIPT = """\
import contextlib
import importlib.util
import io
import sys

import flowc.runtime.tools
if importlib.util.find_spec("flowc.runtime.tools.code_review") is None:
    flowc.runtime.tools.BUILTIN_PACKS = ()

from flowc.cli.main import main

command, flow, tools, *heavy = sys.argv[1:]
with contextlib.redirect_stdout(io.StringIO()):
    code = main([command, flow, "--tools", tools])
print(code, *sorted(name for name in heavy if name in sys.modules))
"""


def run_command(command: str, flow: Path, tools: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, command, str(flow), str(tools), *HEAVY],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )


def test_check_imports_no_web_database_or_pydantic_module(
    write_file: WriteFile, tools_path: Path
) -> None:
    result = run_command("check", write_file("review.flow", CLEAN_FLOW), tools_path)
    assert (result.stdout, result.stderr) == ("0\n", "")


def test_compile_does_import_pydantic_so_the_probe_sees_imports(
    write_file: WriteFile, tools_path: Path
) -> None:
    result = run_command("compile", write_file("review.flow", CLEAN_FLOW), tools_path)
    assert (result.stdout, result.stderr) == ("0 pydantic\n", "")
