"""A time budget -> rounds of the `fuzz` property tests with fresh random seeds, until it is spent.

`make fuzz` runs this: `python -m tests.fuzzing --seconds 600`.  Each round is one pytest run
of the tests marked `fuzz` under the `fuzz` Hypothesis profile (random seeds; failures are
kept in `.hypothesis/` and tried first next time).  The first failing round stops the loop
with pytest's exit status; its output holds the failing example and how to reproduce it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from tests.conftest import PROFILE_VARIABLE

#: Seconds one round may take before pytest-timeout calls it a hang.
ROUND_TIMEOUT = 1800


def main(argv: list[str] | None = None) -> int:
    """Run fuzz rounds until `--seconds` have passed; 0 when every round passed."""
    parser = argparse.ArgumentParser(prog="make fuzz", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0, help="the time budget")
    args = parser.parse_args(argv)
    environment = {**os.environ, PROFILE_VARIABLE: "fuzz"}
    command = [
        sys.executable, "-m", "pytest", "-q", "-m", "fuzz", "-o", f"timeout={ROUND_TIMEOUT}",
    ]  # fmt: skip
    deadline = time.monotonic() + args.seconds
    rounds = 0
    while True:
        rounds += 1
        print(f"fuzz: round {rounds}", flush=True)
        status = subprocess.run(command, env=environment, check=False).returncode
        if status != 0:
            print(f"fuzz: round {rounds} failed (exit status {status})", flush=True)
            return status
        if time.monotonic() >= deadline:
            break
    plural = "" if rounds == 1 else "s"
    print(f"fuzz: {rounds} round{plural} passed in the budget of {args.seconds:g} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
