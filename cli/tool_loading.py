"""`--tools` and `FLOWC_TOOLS` entries -> imported tool modules -> the registry's `ToolSpec`s.

The built-in packs always load first, then `FLOWC_TOOLS`, then `--tools`; a name that is
already taken is an error unless its registration says `replace=True`.  The loading itself
is the runtime's (`flowc.runtime.tools.loading`); here a failure becomes a one-line error
and exit status 2.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from flowc.cli.errors import CommandError
from flowc.runtime.tools.loading import (
    TOOLS_VARIABLE,
    ToolLoadError,
    load_tool_modules,
    tool_entries,
)

if TYPE_CHECKING:
    from flowc.compiler.tools import ToolSpec

__all__ = ["TOOLS_VARIABLE", "import_tool_module", "load_tools", "tool_entries"]


def load_tools(entries: Iterable[str]) -> dict[str, ToolSpec]:
    """Import the built-in packs and every entry; the registry's specs by name."""
    from flowc.runtime import REGISTRY

    try:
        load_tool_modules(entries)
    except ToolLoadError as exc:
        raise CommandError(str(exc)) from None
    return REGISTRY.specs()


def import_tool_module(entry: str) -> None:
    """Import one `--tools` entry (a `.py` path or a module name); `CommandError` on failure."""
    from flowc.runtime.tools.loading import import_tool_module as load_one

    try:
        load_one(entry)
    except ToolLoadError as exc:
        raise CommandError(str(exc)) from None
