"""Benchmark: compile time against Lark's own LALR parse tree, and `flowc check` start-up.

Prints, from one run on this machine:
  1. for 2,500 / 5,000 / 10,000 / 20,000-node flows, the full compile (parse, lower,
     check, build the IR) against `Lark(grammar, parser="lalr").parse(text)` building a
     parse tree of the same text with the same grammar  (target: ratio <= 1.0 at 10,000);
  2. the time ratio per doubling of the flow's size  (target: <= 2.2);
  3. the whole-process time of `flowc check` on a small file against
     `python -c "import lark"`  (target: <= 2.5x).
Timings are the best of several repeats, so other load on the machine inflates them less.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from lark import Lark

from flowc.compiler import ToolParam, ToolSpec, compile_source
from flowc.dsl.parser import grammar_text

SIZES = (2_500, 5_000, 10_000, 20_000)
TOOLS = [ToolSpec(f"w{i}", (ToolParam("k"),)) for i in range(7)]


def generate(nodes: int) -> str:
    """A flow of `nodes` declared nodes in chains of five, each chain ending in a branch.

    Terse on purpose: 20,000 nodes must stay under the 1 MiB source limit.
    """
    lines = ["flow bench", f"set max_steps = {min(nodes * 10, 1_000_000)}"]
    for i in range(nodes):
        lines.append(f"node n{i} = w{i % 7}(k = {i})" if i % 5 == 0 else f"node n{i} = w{i % 7}")
    for first in range(0, nodes, 5):
        group = [f"n{i}" for i in range(first, min(first + 5, nodes))]
        if len(group) > 1:
            lines.append(" -> ".join(group))
        after = f"n{first + 5}" if first + 5 < nodes else "end"
        lines.append(f"{group[-1]} ? s < {first % 100} and default(a, 0) < 3 -> {after} : end")
    return "\n".join(lines) + "\n"


def best_of(repeats: int, work: Callable[[], object], *, collector: bool) -> float:
    """The fastest of `repeats` timed calls; `collector` False pauses `gc` around each."""
    times = []
    for _ in range(repeats):
        gc.collect()
        if not collector:
            gc.disable()
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
        gc.enable()
    return min(times)


def process_time(argv: list[str], repeats: int) -> float:
    """The fastest whole-process wall time of `argv`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    """Run the three measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    lark = Lark(grammar_text(), parser="lalr", lexer="contextual")

    # "normal use": the garbage collector on, as any program runs (flowc pauses it inside
    # a compile, Lark's tree parse does not); "gc off": both with it paused, pure work.
    print("\n1. compile (parse, checks, IR) vs Lark's LALR parse tree, same text and grammar")
    print(f"{'':>15} {'normal use (gc on)':^30} {'gc off for both':^30}")
    print(f"{'nodes':>7} {'lines':>7} " + f"{'lark s':>9} {'flowc s':>9} {'ratio':>8}  " * 2)
    compile_times: list[float] = []
    for size in SIZES:
        text = generate(size)
        compile_source(text, tools=TOOLS)  # warm caches and check it compiles
        row = []
        for collector in (True, False):
            parse_tree = partial(lark.parse, text)
            baseline = best_of(args.repeats, parse_tree, collector=collector)
            ours = best_of(
                args.repeats, partial(compile_source, text, tools=TOOLS), collector=collector
            )
            row += [baseline, ours, ours / baseline]
        compile_times.append(row[1])
        lines = text.count("\n")
        cells = "  ".join(f"{row[i]:>9.3f} {row[i + 1]:>9.3f} {row[i + 2]:>8.2f}" for i in (0, 3))
        print(f"{size:>7,} {lines:>7,} {cells}")

    print("\n2. compile time ratio per doubling (normal use)")
    for index in range(1, len(SIZES)):
        ratio = compile_times[index] / compile_times[index - 1]
        print(f"{SIZES[index - 1]:>7,} -> {SIZES[index]:>7,}: {ratio:.2f}")

    print('\n3. `flowc check` on a small file vs `python -c "import lark"` (whole process)')
    flowc = Path(sys.executable).with_name("flowc")
    with tempfile.TemporaryDirectory() as folder:
        flow_file = Path(folder) / "small.flow"
        flow_file.write_text("analyze -> style -> score; score ? score<80 -> refine : end\n")
        check = [str(flowc), "check", str(flow_file)]
        subprocess.run(check, check=False, capture_output=True)  # warm the parser cache
        lark_import = process_time([sys.executable, "-c", "import lark"], args.repeats * 2)
        check_time = process_time(check, args.repeats * 2)
    print(
        f"import lark: {lark_import:.3f} s, flowc check: {check_time:.3f} s, "
        f"ratio {check_time / lark_import:.2f}"
    )


if __name__ == "__main__":
    main()
