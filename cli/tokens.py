"""`flowc token` -> API tokens and their lines for `FLOWC_API_TOKENS_FILE`.

`flowc token new` prints a new random token (give it to the client; it is shown once),
then its line; `flowc token hash` reads a token from stdin (not from the command line,
where other users and the shell's history would see it) and prints its line.  A line is
`sha256:<64 hex digits>`, then the name if one is given.
"""

from __future__ import annotations

import argparse
import sys

from flowc.cli.errors import EXIT_OK, CommandError


def new(args: argparse.Namespace) -> int:
    """Print a new token on one line and its file line on the next."""
    from flowc.server.auth import new_token, token_line

    name = _name(args.name)
    token = new_token()
    print(token)
    print(token_line(token, name))
    print(
        "flowc: the first line is the token, for the client (it is not kept anywhere); "
        "the second goes into FLOWC_API_TOKENS_FILE",
        file=sys.stderr,
    )
    return EXIT_OK


def line(args: argparse.Namespace) -> int:
    """Print the file line of the token on stdin (one line; its line end is ignored)."""
    from flowc.server.auth import token_line, token_problem

    name = _name(args.name)
    lines = sys.stdin.read().splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise CommandError('no token on stdin: `printf %s "$TOKEN" | flowc token hash`')
    if len(lines) > 1 and any(rest.strip() for rest in lines[1:]):
        raise CommandError("stdin holds more than one line: give one token at a time")
    problem = token_problem(token)
    if problem:
        raise CommandError(f"the token on stdin {problem}")
    print(token_line(token, name))
    return EXIT_OK


def _name(name: str | None) -> str | None:
    from flowc.server.auth import name_problem

    if name is None:
        return None
    problem = name_problem(name)
    if problem:
        raise CommandError(f"--name {problem}")
    return name
