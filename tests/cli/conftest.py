"""CLI fixtures: an empty tool registry per test, no built-in packs, test tool modules, and
`DATABASE_URL` on an empty SQLite file."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowc.runtime import REGISTRY

#: A tool module as a user writes one: importing it registers its tools.
TOOLS_MODULE = '''\
"""Tools for the CLI tests; three take built-in names, so they say they replace them."""

from flowc.runtime import register_tool


@register_tool(replace=True)
def analyze(state):
    """Parse the code.

    Records whether it parsed.
    """
    return {"parsed": True}


@register_tool(replace=True)
def score(state):
    """Score the code."""
    return {"score": 90}


@register_tool("refine", replace=True)
def refine_code(state, max_fixes: int = 10):
    """Fix what the score complained about."""
    return None


@register_tool
def notify(state, *, channel: str, **options):
    return None
'''

#: A flow over those tools without a single problem.
CLEAN_FLOW = """\
flow review
node fix = refine(max_fixes = 3)
analyze -> score
score ? score < 80 -> fix : end
fix -> analyze
"""

WriteFile = Callable[[str, str], Path]


@pytest.fixture(autouse=True)
def isolated_tools(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Each test starts with no tools and no built-in packs; the registry is restored after.

    Tool modules the test imported (files under pytest's temporary folder) are forgotten,
    and so is any folder they put on `sys.path`, as if the next test were a new process.
    """
    monkeypatch.setattr("flowc.runtime.tools.BUILTIN_PACKS", ())
    monkeypatch.delenv("FLOWC_TOOLS", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = list(REGISTRY)
    modules = set(sys.modules)
    _clear()
    yield
    _clear()
    for tool in saved:
        REGISTRY.add(
            tool.function,
            tool.spec.name,
            blocking=tool.spec.blocking,
            process=tool.mode == "process",
        )
    temporary = str(tmp_path_factory.getbasetemp())
    for name in set(sys.modules) - modules:
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        # A built-in pack imported here registered into the registry this test cleared:
        # forget it too, so that the next import registers its tools again.
        packs = ("flowc_tools_", "cli_test_", "flowc.runtime.tools.")
        if name.startswith(packs) or module_file.startswith(temporary):
            del sys.modules[name]


def _clear() -> None:
    for tool in list(REGISTRY):
        REGISTRY.remove(tool.spec.name)


@pytest.fixture
def write_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WriteFile:
    """Work in `tmp_path`; write text there (UTF-8, line ends as given) and return its path."""
    monkeypatch.chdir(tmp_path)

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_bytes(text.encode("utf-8"))
        return path

    return write


@pytest.fixture
def tools_path(write_file: WriteFile) -> Path:
    """The test tool module, as a `.py` file to pass to `--tools`."""
    return write_file("review_tools.py", TOOLS_MODULE)


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`DATABASE_URL` set to an empty SQLite file (the settings read afresh)."""
    from flowc.server.settings import get_settings

    url = f"sqlite+aiosqlite:///{tmp_path / 'flowc.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()
