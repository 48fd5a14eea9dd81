"""Sub-flows in the compiler: finding the child, holding its IR, and checking it with the parent."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from flowc.compiler import check_ir, check_source, compile_source
from flowc.compiler.diagram import to_dot, to_mermaid
from flowc.compiler.ir import Flow
from flowc.compiler.subflows import DirectoryFlows, FoundFlow, StoredFlows
from flowc.compiler.tools import KeyContract, ToolSpec
from flowc.compiler.types import STR
from flowc.dsl import format, parse
from tests.conftest import fake_tools

CHILD = """\
flow review
state code: str
state score: int = 0
typed_analyze -> score -> end
"""


#: Ids of stored graphs, for resolvers that stand for the server's.
LATEST_ID, FRESH_ID, MIDDLE_ID = (str(uuid.UUID(int=n)) for n in (1, 2, 3))


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.flow"
    path.write_text(text, encoding="utf-8")
    return path


def codes(text: str, flows: DirectoryFlows | StoredFlows | None) -> list[str]:
    fetch = ToolSpec("fetch_code", writes=(KeyContract("code", STR),))
    tools = {**fake_tools(), "fetch_code": fetch}
    return [d.code for d in check_source(text, tools=tools, flows=flows).diagnostics]


def format_source(text: str) -> str:
    return format(parse(text))


def child_ir(text: str = CHILD) -> Flow:
    return compile_source(text, tools=fake_tools()).ir


def test_a_child_beside_the_file_is_compiled_into_the_parent(tmp_path: Path) -> None:
    write(tmp_path, "review", CHILD)
    parent = write(tmp_path, "gate", "state code: str\nnode check = flow review\ncheck -> end\n")
    flows = DirectoryFlows.beside(str(parent), tools=fake_tools())
    ir = compile_source(parent.read_text(), tools=fake_tools(), flows=flows).ir
    assert ir.ir_version == 2
    (node,) = ir.nodes
    assert node.tool == "flow"
    assert node.args == {}
    assert node.flow is not None
    assert node.flow.name == "review"
    assert node.flow.graph_id is None
    assert node.flow.ir == child_ir()


def test_the_files_folder_comes_before_the_flows_folders(tmp_path: Path) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    write(here, "review", "flow review\nanalyze -> end\n")
    write(there, "review", "flow review\nstyle -> end\n")
    write(there, "other", "flow other\nscore -> end\n")
    parent = write(here, "gate", "node a = flow review\nnode b = flow other\na -> b -> end\n")
    flows = DirectoryFlows.beside(str(parent), [there], fake_tools())
    ir = compile_source(parent.read_text(), tools=fake_tools(), flows=flows).ir
    first, second = ir.nodes
    assert first.flow is not None and first.flow.ir.start == "analyze"
    assert second.flow is not None and second.flow.ir.start == "score"


def test_a_child_used_twice_is_compiled_once(tmp_path: Path) -> None:
    write(tmp_path, "review", CHILD)
    flows = DirectoryFlows([tmp_path], fake_tools(), root="gate")
    text = "state code: str\nnode a = flow review\nnode b = flow review\na -> b -> end\n"
    ir = compile_source(text, tools=fake_tools(), flows=flows).ir
    assert ir.nodes[0].flow is not None and ir.nodes[1].flow is not None
    assert ir.nodes[0].flow.ir is ir.nodes[1].flow.ir


def test_an_unknown_child_names_the_near_miss_and_where_it_looked(tmp_path: Path) -> None:
    write(tmp_path, "review", CHILD)
    checked = check_source(
        "node a = flow reviw\na -> end\n",
        tools=fake_tools(),
        flows=DirectoryFlows([tmp_path], fake_tools()),
    )
    (found,) = checked.diagnostics
    assert found.code == "E150"
    assert f"no file `reviw.flow` in {tmp_path}" in found.message
    assert found.help == "did you mean `review`?"
    assert (found.span.line, found.span.column) == (1, 15)


def test_without_a_resolver_a_sub_flow_is_not_found() -> None:
    checked = check_source("node a = flow review\na -> end\n", tools=fake_tools())
    assert [d.code for d in checked.errors] == ["E150"]
    assert "no flows were given" in checked.errors[0].message


def test_a_cycle_through_files_is_e151_with_its_path(tmp_path: Path) -> None:
    write(tmp_path, "a", "flow a\nnode x = flow b\nx -> end\n")
    write(tmp_path, "b", "flow b\nnode y = flow c\ny -> end\n")
    write(tmp_path, "c", "flow c\nnode z = flow a\nz -> end\n")
    root = tmp_path / "a.flow"
    checked = check_source(
        root.read_text(), filename=str(root), flows=DirectoryFlows.beside(str(root))
    )
    (found,) = checked.errors
    assert found.code == "E151"
    assert "`a` -> `b` -> `c` -> `a`" in found.message
    assert found.span.line == 2


def test_a_stored_child_that_holds_the_parent_by_name_is_a_cycle() -> None:
    # `a` was saved, then `b` (running that `a`), and now `a` again, running `b`.
    old_a = child_ir("flow a\nanalyze -> end\n")
    b = Flow.model_validate(
        {
            "ir_version": 2,
            "name": "b",
            "start": "x",
            "nodes": [{"name": "x", "tool": "flow", "flow": {"name": "a", "ir": old_a}}],
        }
    )
    gid = str(uuid.uuid4())
    flows = StoredFlows({"b": FoundFlow(b, gid, f"graph {gid}")}, root="a")
    checked = check_source("flow a\nnode run_b = flow b\nrun_b -> end\n", flows=flows)
    assert [d.code for d in checked.errors] == ["E151"]
    assert "`a` -> `b` -> `a`" in checked.errors[0].message


def test_stored_flows_find_by_name_and_by_pinned_id() -> None:
    latest, pinned = child_ir(), child_ir(CHILD.replace("typed_analyze", "typed_style"))
    gid = str(uuid.uuid4())
    flows = StoredFlows(
        {"review": FoundFlow(latest, LATEST_ID)}, {gid: FoundFlow(pinned, gid)}, root="gate"
    )
    text = f'state code: str\nnode a = flow review\nnode b = flow review(graph_id = "{gid}")\n'
    ir = compile_source(text + "a -> b -> end\n", tools=fake_tools(), flows=flows).ir
    first, second = ir.nodes
    assert first.flow is not None and first.flow.ir == latest and first.flow.graph_id == LATEST_ID
    assert second.flow is not None and second.flow.ir == pinned and second.flow.graph_id == gid
    missing = str(uuid.uuid4())
    problems = check_source(
        f'node a = flow review(graph_id = "{missing}")\na -> end\n', flows=flows
    ).errors
    assert [d.code for d in problems] == ["E150"]
    assert missing in problems[0].message


def test_a_pinned_id_is_written_in_the_ir_in_its_canonical_form() -> None:
    gid = uuid.uuid4()
    flows = StoredFlows({}, {str(gid): FoundFlow(child_ir(), str(gid))})
    text = f'state code: str\nnode a = flow review(graph_id = "{gid.hex.upper()}")\na -> end\n'
    ir = compile_source(text, tools=fake_tools(), flows=flows).ir
    assert ir.nodes[0].flow is not None and ir.nodes[0].flow.graph_id == str(gid)


def test_the_ir_round_trips_and_is_checked_again_without_a_resolver(tmp_path: Path) -> None:
    write(tmp_path, "review", CHILD)
    text = "state code: str\nnode check = flow review with on_error = end\ncheck -> end\n"
    ir = compile_source(text, tools=fake_tools(), flows=DirectoryFlows([tmp_path])).ir
    again = Flow.model_validate_json(ir.to_json())
    assert again == ir
    checked = check_ir(ir.to_json(), tools=fake_tools())
    assert checked.errors == ()
    assert checked.program is not None
    node = checked.program.nodes["check"]
    assert node.flow is not None and node.flow.child == ir.nodes[0].flow.ir  # type: ignore[union-attr]


def test_a_version_1_document_cannot_hold_a_sub_flow() -> None:
    document = {
        "ir_version": 1,
        "start": "a",
        "nodes": [{"name": "a", "tool": "flow", "flow": {"name": "c", "ir": child_ir()}}],
    }
    checked = check_ir(json.dumps(document, default=lambda f: f.model_dump(mode="json")))
    assert [d.code for d in checked.errors] == ["E020"]
    assert "the sub-flow `a` needs ir_version 2" in checked.errors[0].message


def test_a_resolver_replaces_what_an_ir_document_holds() -> None:
    stale, fresh = child_ir("flow review\nanalyze -> end\n"), child_ir()
    document = {
        "ir_version": 2,
        "start": "a",
        "state": [{"name": "code", "type": "str"}],
        "nodes": [{"name": "a", "tool": "flow", "flow": {"name": "review", "ir": stale}}],
    }
    text = json.dumps(document, default=lambda f: f.model_dump(mode="json"))
    flows = StoredFlows({"review": FoundFlow(fresh, FRESH_ID)})
    checked = check_ir(text, tools=fake_tools(), flows=flows)
    assert checked.errors == ()
    assert checked.program is not None
    node = checked.program.nodes["a"]
    assert node.flow is not None and node.flow.child == fresh and node.flow.graph_id == FRESH_ID


def test_sub_flows_may_nest_eight_flows_deep_and_no_more(tmp_path: Path) -> None:
    write(tmp_path, "level8", "flow level8\nanalyze -> end\n")
    for level in range(7, 0, -1):
        write(tmp_path, f"level{level}", f"node x = flow level{level + 1}\nx -> end\n")
    ok = tmp_path / "level1.flow"
    assert codes(ok.read_text(), DirectoryFlows.beside(str(ok))) == []
    root = write(tmp_path, "level0", "node x = flow level1\nx -> end\n")
    problems = codes(root.read_text(), DirectoryFlows.beside(str(root)))
    assert problems == ["E153"]  # level1 is fine alone; from level0 it is 9 deep
    flat = check_source(root.read_text(), flows=DirectoryFlows.beside(str(root)))
    assert "E155" in flat.errors[0].message


def test_a_child_that_waits_is_e154_even_through_another(tmp_path: Path) -> None:
    write(tmp_path, "ask", 'flow ask\nnode w = wait("ok")\nw -> end\n')
    flows = DirectoryFlows([tmp_path])
    (direct,) = check_source("node a = flow ask\na -> end\n", flows=flows).errors
    assert direct.code == "E154"
    assert "sub-flow `ask` waits for input at node `w`" in direct.message
    # A stored child that holds one that waits (saved before the rule, or by hand).
    ask = compile_source('flow ask\nnode w = wait("ok")\nw -> end\n').ir
    middle = Flow.model_validate(
        {
            "ir_version": 2,
            "name": "middle",
            "start": "m",
            "nodes": [{"name": "m", "tool": "flow", "flow": {"name": "ask", "ir": ask}}],
        }
    )
    stored = StoredFlows({"middle": FoundFlow(middle, MIDDLE_ID)})
    (through,) = check_source("node a = flow middle\na -> end\n", flows=stored).errors
    assert through.code == "E154"
    assert "at node `w` (through ask)" in through.message


def test_the_parent_must_serve_the_childs_required_inputs(tmp_path: Path) -> None:
    write(tmp_path, "review", CHILD)
    flows = DirectoryFlows([tmp_path])
    assert codes("state x: int = 0\nnode a = flow review\nstart -> a\na -> end\n", flows) == [
        "E601"
    ]
    # A tool whose contract writes `code` runs before the sub-flow: served.
    served = "state x: int = 0\nnode a = flow review\nfetch_code -> a -> end\n"
    assert codes(served, flows) == []
    # Declared, it is the run's input: served too.
    assert codes("state code: str\nnode a = flow review\na -> end\n", flows) == []


def test_keys_both_flows_declare_must_agree(tmp_path: Path) -> None:
    write(tmp_path, "review", CHILD)
    flows = DirectoryFlows([tmp_path])
    rest = "node a = flow review\na -> end\n"
    assert codes(f"state code: str\nstate score: int? = null\n{rest}", flows) == ["E156"]
    assert codes(f"state code: str\nstate score: int = 5\n{rest}", flows) == []


def test_what_a_typed_child_gives_back_is_read_by_the_parent(tmp_path: Path) -> None:
    write(tmp_path, "review", CHILD)
    flows = DirectoryFlows([tmp_path])
    text = (
        "state code: str\nstate score: int = 0\nnode a = flow review\na ? score > 80 -> end : a\n"
    )
    assert codes(text, flows) == []


def test_an_untyped_parent_takes_anything_back(tmp_path: Path) -> None:
    write(tmp_path, "review", CHILD)
    text = "node a = flow review\na ? anything > 1 -> end : a\n"
    found = check_source(text, tools=fake_tools(), flows=DirectoryFlows([tmp_path])).diagnostics
    # A flow without declarations takes what its nodes need as the run's input (`code`),
    # and `anything` may come back from the child: nothing to report.
    assert found == ()


def test_fmt_writes_a_sub_flow_canonically() -> None:
    gid = "0b7e3f2c-5d1a-4c7e-9f57-2a4c1d6e8b90"
    text = f'node   r = flow   review( graph_id="{gid}" )   with on_error=end\nr->end\n'
    canonical = f'node r = flow review(graph_id = "{gid}") with on_error = end\n\nr -> end\n'
    assert format_source(text) == canonical
    assert format_source(canonical) == canonical


def test_diagrams_draw_the_child_inside_the_node(tmp_path: Path) -> None:
    write(tmp_path, "inner", "flow inner\nanalyze -> end\n")
    write(tmp_path, "review", "flow review\nnode deeper = flow inner\nstyle -> deeper -> end\n")
    text = "flow gate\nnode a = flow review\nnode b = flow review\na -> b -> end\n"
    checked = check_source(text, flows=DirectoryFlows([tmp_path], root="gate"))
    assert checked.errors == () and checked.program is not None
    mermaid = to_mermaid(checked.program)
    assert 'subgraph node_a["a (flow review)"]' in mermaid
    assert 'subgraph node_b["b (flow review)"]' in mermaid
    # Each drawing of a child has ids of its own, nested ones too.
    assert "sub1_node_style" in mermaid and "sub3_node_style" in mermaid
    assert 'subgraph sub1_node_deeper["deeper (flow inner)"]' in mermaid
    assert "sub2_node_analyze" in mermaid and "sub4_node_analyze" in mermaid
    assert "node_a --> node_b" in mermaid
    dot = to_dot(checked.program)
    assert '"a" [label="a (flow review)", shape=component];' in dot
    assert 'subgraph "cluster_a/" {' in dot
    assert '"a/deeper/analyze" [label="analyze"];' in dot
    assert '"a" -> "a/start" [style=dotted];' in dot
    assert '"a/deeper" -> "a/deeper/start" [style=dotted];' in dot


@pytest.mark.parametrize(
    "declaration",
    [
        'node a = flow review("x")',
        "node a = flow review(mode = 1)",
        'node a = flow review(graph_id = "nope")',
        "node a = flow review(graph_id = 7)",
        "node a = flow review with backoff = 1",
    ],
)
def test_a_sub_flow_takes_only_a_graph_id_and_on_error(declaration: str, tmp_path: Path) -> None:
    write(tmp_path, "review", "flow review\nanalyze -> end\n")
    assert codes(f"{declaration}\na -> end\n", DirectoryFlows([tmp_path])) == ["E152"]


def test_the_sub_flows_a_flow_runs_hold_at_most_10_000_nodes(tmp_path: Path) -> None:
    chain = " -> ".join(f"n{i}" for i in range(100))
    write(tmp_path, "big", f"flow big\n{chain} -> end\n")  # 100 nodes
    flows = DirectoryFlows([tmp_path])

    def parent(count: int) -> str:
        nodes = "".join(f"node r{i} = flow big\n" for i in range(count))
        return nodes + " -> ".join(f"r{i}" for i in range(count)) + " -> end\n"

    assert codes(parent(100), flows) == []  # 100 x 100: 10,000
    (found,) = check_source(parent(101), flows=flows).errors
    assert found.code == "E155"
    assert "more than 10,000 nodes in all" in found.message
    assert "up to `r100`" in found.message
    assert found.span.line == 101


def test_stored_flows_say_why_a_flow_past_the_lookups_is_missing() -> None:
    flows = StoredFlows({}, skipped={("review", None): "only the first 100 are looked up"})
    text = "node a = flow review\nnode b = flow other\na -> b -> end\n"
    first, second = check_source(text, flows=flows).errors
    assert first.message == "sub-flow `review` cannot be found: only the first 100 are looked up"
    assert second.message == "sub-flow `other` cannot be found: no stored graph is named `other`"


def test_an_ir_document_s_graph_id_is_a_uuid_as_the_ir_writes_it() -> None:
    document = {
        "ir_version": 2,
        "start": "a",
        "nodes": [
            {
                "name": "a",
                "tool": "flow",
                "flow": {"name": "review", "graph_id": "../../etc", "ir": child_ir()},
            }
        ],
    }
    checked = check_ir(json.dumps(document, default=lambda f: f.model_dump(mode="json")))
    assert [d.code for d in checked.errors] == ["E020"]
    assert "nodes.0.flow.graph_id" in checked.errors[0].message
