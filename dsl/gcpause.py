"""A context manager that pauses the cyclic garbage collector while a text is compiled.

Parsing builds hundreds of thousands of small acyclic objects; each allocation burst
makes the collector scan everything built so far, which doubles the time of a large
compile (Lark's own tree parse slows the same way).  Nothing built here forms cycles, so
pausing loses nothing; the collector's previous state is restored on the way out.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause `gc` for the block (nested uses are fine); restore it afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
