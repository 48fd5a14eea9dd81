"""Built-in tool packs: modules whose import registers their tools in `runtime.REGISTRY`."""

from __future__ import annotations

import importlib

#: The packs that every `flowc` command and the server load.
BUILTIN_PACKS = ("flowc.runtime.tools.code_review",)


def load_builtin_packs() -> None:
    """Import every built-in pack (each registers its tools once, on first import)."""
    for module in BUILTIN_PACKS:
        importlib.import_module(module)
