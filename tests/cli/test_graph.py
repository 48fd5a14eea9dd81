"""`flowc graph` and `compiler.diagram`: Mermaid and DOT source, labels escaped for each."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowc.cli.main import main
from flowc.compiler import check_source
from flowc.compiler.diagram import to_dot, to_mermaid
from flowc.compiler.program import Program
from tests.cli.conftest import CLEAN_FLOW, WriteFile

MERMAID = """\
---
title: review
---
flowchart TD
    flow_start(("start"))
    node_fix["fix (refine)"]
    node_analyze["analyze"]
    node_score["score"]
    flow_end((("end")))
    flow_start --> node_analyze
    node_analyze --> node_score
    node_score -->|"score #lt; 80"| node_fix
    node_score -->|"else"| flow_end
    node_fix --> node_analyze
"""

DOT = """\
digraph "review" {
    node [shape=box, style=rounded];
    "start" [shape=circle];
    "fix" [label="fix (refine)"];
    "analyze";
    "score";
    "end" [shape=doublecircle];
    "start" -> "analyze";
    "analyze" -> "score";
    "score" -> "fix" [label="score < 80"];
    "score" -> "end" [label="else"];
    "fix" -> "analyze";
}
"""


def program(text: str) -> Program:
    checked = check_source(text)
    assert checked.program is not None
    return checked.program


@pytest.fixture
def tools_option(tools_path: Path) -> list[str]:
    return ["--tools", str(tools_path)]


def test_mermaid_is_the_default(
    write_file: WriteFile, tools_option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("review.flow", CLEAN_FLOW)
    assert main(["graph", "review.flow", *tools_option]) == 0
    assert capsys.readouterr() == (MERMAID, "")


def test_dot(
    write_file: WriteFile, tools_option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("review.flow", CLEAN_FLOW)
    assert main(["graph", "review.flow", "--format", "dot", *tools_option]) == 0
    assert capsys.readouterr() == (DOT, "")


def test_a_flow_with_errors_prints_diagnostics_and_no_graph(
    write_file: WriteFile, tools_option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("loop.flow", "analyze -> score\nscore -> analyze\n")
    assert main(["graph", "loop.flow", *tools_option]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(
        "loop.flow:1:1: error[E401]: this loop never reaches `end`: analyze -> score -> analyze\n"
    )


def test_warnings_go_to_stderr_and_the_graph_is_drawn(
    write_file: WriteFile, tools_option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_file("open.flow", "analyze -> score\n")
    assert main(["graph", "open.flow", "--format", "dot", *tools_option]) == 0
    out, err = capsys.readouterr()
    assert '"analyze" -> "score";' in out
    assert "warning[W502]" in err


def test_a_missing_file_exits_2(write_file: WriteFile, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "none.flow"]) == 2
    assert capsys.readouterr().err == (
        "flowc: error: cannot read `none.flow`: No such file or directory\n"
    )


def test_end_is_drawn_only_when_something_leads_there() -> None:
    flow = program("a -> b\n")
    assert to_mermaid(flow) == (
        "flowchart TD\n"
        '    flow_start(("start"))\n'
        '    node_a["a"]\n'
        '    node_b["b"]\n'
        "    flow_start --> node_a\n"
        "    node_a --> node_b\n"
    )
    assert '"end"' not in to_dot(flow)
    assert to_dot(flow).startswith('digraph "flow" {\n')


def test_mermaid_escapes_what_would_end_or_change_a_label() -> None:
    flow = program("a ? name == 'say \"hi\" #1 <b> | \\\\' -> end : a\n")
    assert (
        '    node_a -->|"name == #quot;say #92;#quot;hi#92;#quot; #35;1 #lt;b#gt; #124; '
        '#92;#92;#quot;"| flow_end\n'
    ) in to_mermaid(flow)


def test_dot_escapes_quotes_and_backslashes() -> None:
    flow = program("a ? name == 'say \"hi\" \\\\n' -> end : a\n")
    assert '    "a" -> "end" [label="name == \\"say \\\\\\"hi\\\\\\" \\\\\\\\n\\""];\n' in to_dot(
        flow
    )


def test_names_that_are_keywords_elsewhere_stay_distinct() -> None:
    flow = program("graph -> style -> subgraph -> end\n")
    mermaid = to_mermaid(flow)
    assert "    node_graph --> node_style\n" in mermaid
    assert "    node_subgraph --> flow_end\n" in mermaid
    assert '    "graph" -> "style";\n' in to_dot(flow)


def test_every_arm_of_a_long_branch_is_an_edge_in_order() -> None:
    flow = program("s ? x >= 90 -> p : x >= 80 -> r : f\np -> end\nr -> end\nf -> end\n")
    assert to_dot(flow).splitlines()[9:12] == [
        '    "s" -> "p" [label="x >= 90"];',
        '    "s" -> "r" [label="x >= 80"];',
        '    "s" -> "f" [label="else"];',
    ]


def test_a_node_with_policies_is_labelled_with_them() -> None:
    p = program(
        "set timeout = 30\n"
        'node fetch = call_api(url = "x") with retries = 3, timeout = 5, backoff = 0.25\n'
        "node check = check with timeout = 1.5\n"
        "fetch -> check -> end\n"
    )
    mermaid = to_mermaid(p)
    assert '    node_fetch["fetch (call_api) with timeout = 5, retries = 3, backoff = 0.25"]\n' in (
        mermaid
    )
    assert '    node_check["check with timeout = 1.5"]\n' in mermaid
    dot = to_dot(p)
    assert (
        '    "fetch" [label="fetch (call_api) with timeout = 5, retries = 3, backoff = 0.25"];\n'
        in (dot)
    )
    assert '    "check" [label="check with timeout = 1.5"];\n' in dot


def test_an_error_route_is_a_dashed_edge() -> None:
    flow = program(
        "node fetch = t with retries = 2, on_error = fallback\nfetch -> end\nfallback -> end\n"
    )
    mermaid = to_mermaid(flow)
    assert 'node_fetch["fetch (t) with retries = 2"]' in mermaid
    assert 'node_fetch -.->|"on error"| node_fallback' in mermaid
    dot = to_dot(flow)
    assert '"fetch" -> "fallback" [label="on error", style=dashed];' in dot
    # An error route to `end` draws `end`, even when no route leads there.
    assert "flow_end" in to_mermaid(program("node a = t with on_error = end\na -> b\n"))


def test_parallel_branches_fork_and_join() -> None:
    mermaid = to_mermaid(program("a -> [b -> b2, c] -> d\nd -> end\n"))
    edges = [line.strip() for line in mermaid.splitlines() if "-->" in line]
    assert edges == [
        "flow_start --> node_a",
        "node_a --> node_b",
        "node_b --> node_b2",
        "node_b2 --> node_d",
        "node_a --> node_c",
        "node_c --> node_d",
        "node_d --> flow_end",
    ]
