"""Benchmark: the compiler on pathological texts of 64 KiB, 256 KiB and 1 MiB.

Prints, for each shape below and each size: the CPU time (best of `--repeats`; other load on
the machine inflates it less than wall time), the peak memory the work allocates
(tracemalloc, the text itself not counted), what it prints, and the growth per doubling of
the text between sizes (target: <= 2.2 for time and for memory).

  chain      `flowc check`: `a -> a -> ... -> end` on one line, `a` a known node (a routing
             rule per arrow, so one diagnostic per arrow, each on the same 1 MiB line)
  unknown    `flowc check`: `n00000 -> n00001 -> ... -> end` on one line, every node an
             unknown tool close in length to the built-in ones (a did-you-mean each)
  comments   `flowc fmt --check`: one route per line, each with a trailing comment
  syntax     `flowc check`: 45 syntax errors spread over the text (the recovery once parsed
             the text again from the top for each)
  arms       `flowc check`: one branch with an arm per line (4,000 in 64 KiB)
  api        what `POST /graph/create` runs: `compile_source` with the built-in tools and the
             422 body of its diagnostics, on the `unknown` text spread over lines

Each shape and size runs in a fresh interpreter, once to warm up, then timed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

KiB = 1024
SIZES = (64 * KiB, 256 * KiB, 1024 * KiB)
TARGET = 2.2
#: Syntax errors in the `syntax` shape: fewer than the recovery reports, spread over all of it.
SYNTAX_ERRORS = 45


def _lines(size: int, line: Callable[[int], str], head: str = "", tail: str = "") -> str:
    """`head`, then `line(0)`, `line(1)`, ... while they fit in `size` bytes, then `tail`."""
    parts, total, index = [head], len(head) + len(tail), 0
    while total + len(piece := line(index)) <= size:
        parts.append(piece)
        total += len(piece)
        index += 1
    return "".join(parts) + tail


def chain(size: int) -> str:
    """A known node routed to itself once per arrow, all on one line."""
    return _lines(size, lambda i: "a -> ", head="node a = analyze\n", tail="end\n")


def unknown(size: int) -> str:
    """Unknown nodes in one chain on one line."""
    return _lines(size, lambda i: f"n{i:05d} -> ", tail="end\n")


def unknown_lines(size: int) -> str:
    """Unknown nodes in one chain, a link per line."""
    return _lines(size, lambda i: f"n{i:05d} ->\n", tail="end\n")


def comments(size: int) -> str:
    """Routes with trailing comments, already in the canonical layout."""
    return _lines(size, lambda i: f"n{i:06d} -> end  # note {i:06d}\n")


def syntax(size: int) -> str:
    """A route per line, 45 of them broken, spread evenly over the text."""
    step = size // 12 // SYNTAX_ERRORS  # lines are 12 bytes or so
    return _lines(size, lambda i: f"a{i} -> -> b\n" if i % step == step - 1 else f"a{i} -> b{i}\n")


def arms(size: int) -> str:
    """One branch with an arm per line."""
    return _lines(size, lambda i: f"  x == {i} -> b :\n", head="b -> end\na ?\n", tail="  end\n")


class _Counter(io.TextIOBase):
    """A text stream that only counts what is written to it."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, text: str) -> int:
        """Count the characters."""
        self.size += len(text)
        return len(text)


def _command(argv: list[str]) -> Callable[[Path], int]:
    """Run `flowc ARGV FILE` in this process; the characters it prints."""
    from flowc.cli.main import main

    def run(path: Path) -> int:
        out = _Counter()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            main([*argv, str(path)])
        return out.size

    return run


def _api(path: Path) -> int:
    """What `POST /graph/create` does with the text: compile, then the 422 body."""
    from flowc.compiler import compile_source
    from flowc.dsl import FlowError
    from flowc.runtime import REGISTRY
    from flowc.runtime.tools.loading import load_tool_modules
    from flowc.server.routes.graphs import SOURCE_NAME, flow_errors

    load_tool_modules(())
    try:
        compile_source(path.read_text(encoding="utf-8"), tools=REGISTRY.specs())
    except FlowError as problem:
        return len(json.dumps(flow_errors(problem, SOURCE_NAME).detail))
    return 0


#: name -> (what the text is, what runs on it)
SHAPES: dict[str, tuple[Callable[[int], str], Callable[[], Callable[[Path], int]]]] = {
    "chain": (chain, lambda: _command(["check"])),
    "unknown": (unknown, lambda: _command(["check"])),
    "comments": (comments, lambda: _command(["fmt", "--check"])),
    "syntax": (syntax, lambda: _command(["check"])),
    "arms": (arms, lambda: _command(["check"])),
    "api": (unknown_lines, lambda: _api),
}


def measure(shape: str, size: int, repeats: int) -> dict[str, float]:
    """In this process: the best time, the peak memory and the output of one shape and size."""
    generate, runner = SHAPES[shape]
    run = runner()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{shape}.flow"
        path.write_text(generate(size), encoding="utf-8")
        output = run(path)  # warm up: imports, the parser's tables
        times = []
        for _ in range(repeats):
            start = time.process_time()
            run(path)
            times.append(time.process_time() - start)
        tracemalloc.start()
        run(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {"seconds": min(times), "peak": peak, "output": output}


def _child(shape: str, size: int, repeats: int) -> dict[str, float]:
    argv = [sys.executable, __file__, "--child", shape, str(size), "--repeats", str(repeats)]
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def _per_doubling(small: float, large: float, sizes: tuple[int, int]) -> float:
    doublings = math.log2(sizes[1] / sizes[0])
    return float((large / max(small, 1e-9)) ** (1 / doublings))


def main() -> None:
    """Measure every shape at every size, each in a fresh interpreter, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--child", nargs=2, metavar=("SHAPE", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args.repeats)))
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"growth per doubling of the text; target <= {TARGET} for time and memory\n")
    print(
        f"{'shape':<9} {'size':>8} {'time s':>8} {'peak MiB':>9} {'output KB':>10}"
        f" {'time x/2x':>10} {'memory x/2x':>12}"
    )
    worst = 0.0
    for shape in args.shapes:
        previous: dict[str, float] | None = None
        for index, size in enumerate(SIZES):
            found = _child(shape, size, args.repeats)
            growth = ""
            if previous is not None:
                pair = (SIZES[index - 1], size)
                time_growth = _per_doubling(previous["seconds"], found["seconds"], pair)
                memory_growth = _per_doubling(previous["peak"], found["peak"], pair)
                worst = max(worst, time_growth, memory_growth)
                growth = f" {time_growth:>10.2f} {memory_growth:>12.2f}"
            print(
                f"{shape:<9} {size // KiB:>5} KiB {found['seconds']:>8.3f}"
                f" {found['peak'] / KiB / KiB:>9.1f} {found['output'] / 1000:>10.1f}{growth}",
                flush=True,
            )
            previous = found
    print(f"\nworst growth per doubling: {worst:.2f} (target <= {TARGET})")


if __name__ == "__main__":
    main()
