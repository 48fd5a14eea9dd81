"""mutmut's results -> the mutants no test kills and no review calls equivalent; exit 1 if any.

`make mutate` runs this after `mutmut run`, from the repository's root.  A mutant is caught
when a test fails on it (`killed`) or it makes the tests hang (`timeout`); every other
status (`survived`, `no tests`, `suspicious`, ...) fails the run unless the mutant is listed
in `equivalent.txt`.  An entry that matches no surviving mutant fails it too, so the list
stays short and true.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

EQUIVALENT = Path(__file__).with_name("equivalent.txt")
CAUGHT = frozenset({"killed", "timeout"})
SEPARATOR = " :: "
#: One reviewed mutant: the function mutmut names it by, and its mutated code.
Entry = tuple[str, str]


def read_equivalents(text: str, source: str = str(EQUIVALENT)) -> dict[Entry, str]:
    """The reviewed mutants in `text` (`function :: mutated code :: reason`), with reasons."""
    entries: dict[Entry, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split(SEPARATOR)]
        if len(fields) != 3 or not all(fields):
            raise SystemExit(
                f"{source}:{number}: expected `function{SEPARATOR}mutated code{SEPARATOR}reason`"
            )
        function, code, reason = fields
        entries[(function, code)] = reason
    return entries


def function_of(mutant: str) -> str:
    """`flowc.dsl.lexer.xǁFlowLexerǁlex__mutmut_17` -> `flowc.dsl.lexer.xǁFlowLexerǁlex`."""
    return mutant.rpartition("__mutmut_")[0]


def mutated_code(diff: str) -> str:
    """What a mutant's diff puts in, on one line; for a pure removal, `-` and what it takes out."""
    added = [line[1:].strip() for line in _changes(diff, "+")]
    if added:
        return " ".join(line for line in added if line)
    return "- " + " ".join(line[1:].strip() for line in _changes(diff, "-"))


def _changes(diff: str, sign: str) -> Iterable[str]:
    return (
        line
        for line in diff.splitlines()
        if line.startswith(sign) and not line.startswith(sign * 3)
    )


def _mutmut(*args: str) -> str:
    command = Path(sys.executable).with_name("mutmut")
    done = subprocess.run([str(command), *args], capture_output=True, text=True, check=True)
    return done.stdout


def uncaught() -> dict[str, str]:
    """Each mutant that no test caught, with its status (from `mutmut results`)."""
    found: dict[str, str] = {}
    for line in _mutmut("results").splitlines():
        name, colon, status = line.strip().rpartition(": ")
        if colon and "__mutmut_" in name and status not in CAUGHT:
            found[name] = status
    return found


def main() -> int:
    """Report the unreviewed survivors and the stale entries; 0 when there are none."""
    reviewed = read_equivalents(EQUIVALENT.read_text(encoding="utf-8"))
    matched: set[Entry] = set()
    failures = 0
    for name, status in sorted(uncaught().items()):
        diff = _mutmut("show", name)
        entry = (function_of(name), mutated_code(diff))
        if entry in reviewed:
            matched.add(entry)
            continue
        failures += 1
        print(f"{status}: {name}\n  {entry[0]}{SEPARATOR}{entry[1]}\n{diff}")
    for function, code in sorted(reviewed.keys() - matched):
        failures += 1
        print(f"no longer survives, remove it from {EQUIVALENT.name}: {function}{SEPARATOR}{code}")
    verdict = f"{failures} problem(s)" if failures else "no unreviewed survivors"
    print(f"{verdict}; {len(matched)} reviewed equivalent mutant(s) survive")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
