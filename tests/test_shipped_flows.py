"""The flows we ship and show are canonical: every `.flow` under `examples/` and every flow
block in the README and `docs/` passes `flowc fmt --check`.

A flow block in Markdown is fenced as ```` ```flow ````; an untagged block that reads as a
flow is an error here, so a flow cannot dodge the check by losing its tag.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowc.cli.main import main
from flowc.dsl import FlowError, parse

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted((ROOT / "examples").rglob("*.flow"))
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: A fenced block: its indentation, its info string and its body.
FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.M | re.S
)


def blocks(document: Path) -> list[tuple[int, str, str]]:
    """Every fenced block of a Markdown file: its line, info string and unindented body."""
    text = document.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        indent = match["indent"]
        body = "".join(
            line.removeprefix(indent) for line in match["body"].splitlines(keepends=True)
        )
        found.append((text.count("\n", 0, match.start()) + 1, match["info"].strip(), body))
    return found


FLOW_BLOCKS = [
    pytest.param(body, id=f"{document.name}:{line}")
    for document in DOCUMENTS
    for line, info, body in blocks(document)
    if info == "flow"
]


def test_there_are_examples_and_flow_blocks_to_check() -> None:
    assert len(EXAMPLES) >= 4
    assert len(FLOW_BLOCKS) >= 30


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_shipped_flow_is_canonical(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["fmt", "--check", str(path.relative_to(ROOT))]) == 0, capsys.readouterr()


@pytest.mark.parametrize("body", FLOW_BLOCKS)
def test_every_flow_block_in_the_docs_is_canonical(
    body: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "block.flow"
    path.write_text(body, encoding="utf-8")
    assert main(["fmt", "--check", str(path)]) == 0, body


@pytest.mark.parametrize("document", DOCUMENTS, ids=[d.name for d in DOCUMENTS])
def test_a_block_that_reads_as_a_flow_is_tagged_flow(document: Path) -> None:
    for line, info, body in blocks(document):
        if info or "->" not in body:
            continue
        try:
            parse(body)
        except FlowError:
            continue  # an error message, a shell session, a broken example: not a flow
        pytest.fail(f"{document.name}:{line}: a flow in an untagged block; fence it ```flow")


def test_the_check_catches_a_layout_that_is_not_canonical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "loose.flow"
    path.write_text("node a = t\nnode bb = t\na->bb\n", encoding="utf-8")
    assert main(["fmt", "--check", str(path)]) == 1
