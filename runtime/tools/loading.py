"""Tool module entries (`.py` paths or module names) -> imported modules, tools registered.

Shared by the `flowc` command (`--tools`, `FLOWC_TOOLS`) and the server (`flowc serve
--tools`, `FLOWC_TOOLS`).  An entry that names a `.py` file is imported from that file, with
its folder on `sys.path` as `python FILE` would have it; any other entry is a module name,
found first in the current directory as `python -m` would.  A tool name registered twice is
an error (`ToolConflictError`) unless the second registration says `replace=True`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType


class ToolLoadError(Exception):
    """A tool module that could not be imported; the message names it and why."""


#: The environment variable listing tool modules, separated by `os.pathsep`.
TOOLS_VARIABLE = "FLOWC_TOOLS"


def tool_entries(options: Iterable[str], environ: Mapping[str, str]) -> list[str]:
    """`FLOWC_TOOLS` entries, then `--tools` options, without blanks or repeats."""
    entries = [*environ.get(TOOLS_VARIABLE, "").split(os.pathsep), *options]
    return list(dict.fromkeys(entry.strip() for entry in entries if entry.strip()))


def load_tool_modules(entries: Iterable[str]) -> None:
    """Import the built-in packs, then every entry; `ToolLoadError` names the one that failed."""
    from flowc.runtime.tools import BUILTIN_PACKS, load_builtin_packs

    try:
        load_builtin_packs()
    except Exception as exc:
        raise ToolLoadError(_failure(", ".join(BUILTIN_PACKS), exc)) from None
    for entry in entries:
        import_tool_module(entry)


def import_tool_module(entry: str) -> None:
    """Import one `--tools` entry (a `.py` path or a module name); `ToolLoadError` on failure."""
    path = Path(entry)
    if path.suffix == ".py" or "/" in entry or os.sep in entry:  # a path, not a module name
        if not path.exists():
            raise ToolLoadError(f"cannot load tools from `{entry}`: no such file")
        if path.suffix != ".py" or not path.is_file():
            raise ToolLoadError(f"cannot load tools from `{entry}`: not a .py file")
    try:
        if path.suffix == ".py":
            _put_first_on_path(path.resolve().parent)
            _import_file(path)
        else:
            _put_first_on_path(Path.cwd())
            importlib.import_module(entry)
    except ToolLoadError:
        raise
    except Exception as exc:
        raise ToolLoadError(_failure(entry, exc)) from None


def _put_first_on_path(folder: Path) -> None:
    """Make modules in `folder` importable by name, ahead of installed ones, as Python does."""
    entry = str(folder)
    if entry not in sys.path:
        sys.path.insert(0, entry)
        importlib.invalidate_caches()


def _import_file(path: Path) -> None:
    """Import a `.py` file by its own name when that name finds it, else under a unique one.

    `tools.py` beside the flow becomes the module `tools`, as `import tools` would make it;
    a file whose name is taken by another module (`json.py`) or is not an identifier gets a
    name of its own, so that it shadows nothing.
    """
    resolved = path.resolve()
    stem = resolved.stem
    if stem.isidentifier() and _finds(stem, resolved):
        importlib.import_module(stem)
        return
    if run_file(own_name(resolved), resolved) is None:
        raise ToolLoadError(f"cannot load tools from `{path}`: not a Python module")


def own_name(file: Path) -> str:
    """A module name for the tool file `file` (resolved) that shadows no other module."""
    digest = hashlib.sha256(str(file).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"flowc_tools_{_identifier(file.stem)}_{digest}"


def run_file(name: str, file: Path) -> ModuleType | None:
    """The module in `file`, run under `name`; None if the file is not Python.

    Kept in `sys.modules` as an import keeps it: dataclasses and pickling look it up there.
    """
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _finds(name: str, file: Path) -> bool:
    """True when `import name` would load `file` (or already has)."""
    module = sys.modules.get(name)
    found = getattr(module, "__file__", None) if module is not None else None
    if module is None:
        spec = importlib.util.find_spec(name)
        found = spec.origin if spec is not None else None
    return found is not None and Path(found).resolve() == file


def _identifier(stem: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in stem)


def _failure(entry: str, exc: BaseException) -> str:
    detail = " ".join(str(exc).split()) or "no message"
    return f"cannot load tools from `{entry}`: {type(exc).__name__}: {detail}"
