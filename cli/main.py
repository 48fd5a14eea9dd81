"""Command-line arguments -> one command's exit code: the `flowc` parser and its dispatch.

Each command lives in its own module, imported only when that command runs, so
`flowc check` loads the front end and the compiler's checks and nothing else.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from flowc.cli.errors import EXIT_USAGE, CommandError, report

PROG = "flowc"

CHECK_FORMATS = ("text", "json", "github", "sarif")
GRAPH_FORMATS = ("mermaid", "dot")


def version() -> str:
    """The installed distribution's version, or `unknown` when running from a bare checkout."""
    from importlib import metadata

    try:
        return metadata.version("flowc")
    except metadata.PackageNotFoundError:
        return "unknown"


class _VersionAction(argparse.Action):
    """`--version`, resolved only when asked for (reading package metadata is not free)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(f"{PROG} {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The `flowc` argument parser; each command names the `module:function` that runs it."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Check, compile, format and draw Flow workflow files."
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    tools = argparse.ArgumentParser(add_help=False)
    tools.add_argument(
        "--tools",
        action="append",
        default=[],
        metavar="MODULE_OR_PATH",
        help="import a tool module (a module name or a .py file); repeatable; "
        "FLOWC_TOOLS lists more, separated like PATH",
    )

    flows = argparse.ArgumentParser(add_help=False)
    flows.add_argument(
        "--flows",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of flow files that sub-flows (`flow NAME`) are found in, after the "
        "file's own folder; repeatable",
    )

    check = _command(commands, "check", "report every problem in flow files", [tools, flows])
    check.add_argument("files", nargs="+", metavar="FILE", help="flow files; `-` reads stdin")
    check.add_argument("--format", choices=CHECK_FORMATS, default="text")

    compile_ = _command(
        commands, "compile", "print a flow's IR as JSON", [tools, flows], "compile:run"
    )
    compile_.add_argument("file", metavar="FILE", help="a flow file; `-` reads stdin")

    fmt = _command(commands, "fmt", "rewrite flow files in the canonical layout")
    fmt.add_argument("files", nargs="+", metavar="FILE", help="flow files; `-` reads stdin")
    fmt.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a file would change"
    )

    graph = _command(commands, "graph", "print a flow's diagram source", [tools, flows])
    graph.add_argument("file", metavar="FILE", help="a flow file; `-` reads stdin")
    graph.add_argument("--format", choices=GRAPH_FORMATS, default="mermaid")

    run = _command(commands, "run", "run a flow in this process (no database)", [tools, flows])
    run.add_argument("file", metavar="FILE", help="a flow file; `-` reads stdin")
    run.add_argument("--input", metavar="JSON", help="the initial state, a JSON object")
    run.add_argument("--input-file", metavar="PATH", help="read the initial state from a file")
    run.add_argument("--code-file", metavar="PATH", help="put the file's text in `code`")
    run.add_argument("--json", action="store_true", help="print the whole result as JSON")
    run.add_argument("--max-steps", type=int, metavar="N", help="override `set max_steps`")
    run.add_argument(
        "--resume",
        action="append",
        metavar="JSON",
        help="the input of the run's next wait, a JSON object; repeatable, one per wait in "
        "order (with none left, a wait reads its input from the terminal)",
    )
    run.epilog = (
        "exit codes: 0 the run succeeded; 1 it failed; 2 usage or compile errors, or an "
        "input (--input, --resume, typed at a wait) that does not fit the flow's state "
        "declarations; 3 the run waits at a wait node with no input to go on (no --resume "
        "left and standard input is not a terminal): the state so far is printed; 130 "
        "cancelled by Ctrl-C"
    )

    schema = _command(
        commands,
        "schema",
        "print a flow's input schema, or without FILE the IR's, as JSON Schema",
        [tools, flows],
        "compile:schema",
    )
    schema.add_argument(
        "file", nargs="?", metavar="FILE", help="a flow file; `-` reads stdin (default: none)"
    )

    listing = _command(commands, "tools", "list the registered tools", [tools])
    listing.add_argument("--json", action="store_true", help="print JSON")

    serve = _command(
        commands, "serve", "serve the HTTP API (DATABASE_URL names the database)", [tools]
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--reload", action="store_true", help="restart when the code changes")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="do not execute runs here: `flowc worker` processes do (PostgreSQL)",
    )
    serve.add_argument(
        "--migrate", action="store_true", help="upgrade an old database schema before serving"
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="serve on a non-loopback host without API tokens (anyone who can reach it can "
        "use the API)",
    )

    worker = _command(
        commands, "worker", "execute runs from PostgreSQL, without HTTP (DATABASE_URL)", [tools]
    )
    worker.add_argument(
        "--concurrency", type=int, metavar="N", help="runs at once (FLOWC_WORKER_CONCURRENCY)"
    )
    worker.add_argument(
        "--migrate", action="store_true", help="upgrade an old database schema before working"
    )

    token = _command(
        commands, "token", "make API tokens and their FLOWC_API_TOKENS_FILE lines", (), "tokens:new"
    )
    kinds = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = _command(kinds, "new", "print a new token, then its line", (), "tokens:new")
    hashed = _command(kinds, "hash", "print the line of a token read from stdin", (), "tokens:line")
    for action in (new, hashed):
        action.add_argument("--name", help="the token's name in the line (for messages)")

    db = _command(commands, "db", "manage the database schema (DATABASE_URL names the database)")
    actions = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    _command(actions, "upgrade", "upgrade the schema to this flowc's revision", (), "db:run")
    _command(actions, "current", "print the schema's revision", (), "db:run")
    return parser


def _command(
    commands: Any,
    name: str,
    summary: str,
    parents: Sequence[argparse.ArgumentParser] = (),
    target: str | None = None,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=summary[0].upper() + summary[1:] + ".", parents=parents
    )
    parser.set_defaults(run=f"flowc.cli.{target or name + ':run'}")
    return parser


def _runner(target: str) -> Callable[[argparse.Namespace], int]:
    module, _, function = target.partition(":")
    run: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), function)
    return run


def main(argv: list[str] | None = None) -> int:
    """Run `flowc` with `argv` (default: the process's arguments); return the exit code."""
    try:
        args = build_parser().parse_args(argv)
        return _runner(args.run)(args)
    except CommandError as exc:
        return report(exc)
    except SystemExit as exc:  # argparse's usage errors, --help and --version
        return _exit_code(exc)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return EXIT_USAGE


def entry() -> None:
    """The console script: run `main` and exit with its code."""
    try:
        code = main()
        sys.stdout.flush()
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader went away (`flowc tools | head`): stop quietly, as other tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    entry()
