"""The README's commands work as typed, and print what the README shows.

A shown session is a fenced block whose first line is `$ COMMAND`; the command runs in the
repository with the `flowc` of this environment first on PATH (as after
`. .venv/bin/activate`), and every line the README shows must come out, in order.
Durations (`0.68 ms`, right-aligned) differ from run to run and are compared as ` N ms`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_shipped_flows import blocks

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"

DURATION = re.compile(r" +\d+\.\d+ ms")


def sessions() -> list[tuple[int, str, list[str]]]:
    """Each shown session: its line in the README, the command, the lines it shows."""
    found = []
    for line, _info, body in blocks(README):
        first, *shown = body.splitlines()
        if first.startswith("$ "):
            found.append((line, first[2:], shown))
    return found


SESSIONS = sessions()


def _normal(line: str) -> str:
    return DURATION.sub(" N ms", line.rstrip())


def test_the_readme_shows_sessions() -> None:
    assert [command.split()[:2] for _, command, _ in SESSIONS] == [
        ["flowc", "check"],
        ["flowc", "run"],
    ]


@pytest.mark.parametrize(
    ("command", "shown"),
    [pytest.param(c, s, id=f"README.md:{n}") for n, c, s in SESSIONS],
)
def test_a_readme_session_prints_what_it_shows(command: str, shown: list[str]) -> None:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("FLOWC_TOOLS", None)
    result = subprocess.run(
        command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode in (0, 1), result.stderr  # 1: the example has errors on purpose
    printed = [_normal(line) for line in (result.stdout + result.stderr).splitlines()]
    position = 0
    for expected in (_normal(line) for line in shown):
        try:
            position = printed.index(expected, position) + 1
        except ValueError:
            pytest.fail(
                f"`{command}` did not print {expected!r}; it printed:\n" + "\n".join(printed)
            )
