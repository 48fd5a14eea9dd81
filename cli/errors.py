"""Problems that stop a command before it looks at a flow -> one line on stderr, exit 2.

A missing file, a directory, a tool module that fails to import: none of them is a
diagnostic about a flow, so none of them is rendered like one.
"""

from __future__ import annotations

import sys

#: Exit codes: no errors; a flow has errors; the command could not run (usage, I/O, tools).
EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A problem with the command's input rather than with a flow: exit 2, no traceback."""


def report(exc: CommandError) -> int:
    """Print the problem as `flowc: error: ...` on standard error; the exit code for it."""
    print(f"flowc: error: {exc}", file=sys.stderr)
    return EXIT_USAGE
