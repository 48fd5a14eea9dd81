"""Golden diagnostics: each `golden/*.flow` compiles to exactly the text in its `.txt` file.

Every diagnostic code has at least one case.  To write a new case's expected text, run
`FLOWC_UPDATE_GOLDEN=1 pytest tests/compiler/test_golden.py` and read the diff before
committing it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from flowc.compiler import check_ir, check_source
from flowc.compiler.render import render_text_all
from tests.conftest import fake_tools

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted([*GOLDEN.glob("*.flow"), *GOLDEN.glob("*.ir.json")])

#: Codes that a small golden file cannot trigger, and the test that covers each instead.
ELSEWHERE = {
    "E001": "tests/dsl/test_limits.py (a text over 1 MiB)",
    "E002": "tests/dsl/test_limits.py and tests/cli (text UTF-8 cannot hold)",
}


def render_case(path: Path) -> str:
    text = path.read_bytes().decode("utf-8")
    if path.name.endswith(".ir.json"):
        checked = check_ir(text, tools=fake_tools())
        return render_text_all(checked.diagnostics, None, path.name) + "\n"
    checked = check_source(text, tools=fake_tools(), filename=path.name)
    return render_text_all(checked.diagnostics, text, path.name) + "\n"


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_golden(path: Path) -> None:
    expected_path = _expected_path(path)
    actual = render_case(path)
    if os.environ.get("FLOWC_UPDATE_GOLDEN") == "1":
        expected_path.write_text(actual, encoding="utf-8")
    assert actual == expected_path.read_text(encoding="utf-8")


def test_every_code_has_a_golden_case() -> None:
    documented = set(re.findall(r"^### `([EW]\d{3})`", _language_doc(), re.MULTILINE))
    covered = set(ELSEWHERE)
    for path in CASES:
        covered |= set(re.findall(r"\[([EW]\d{3})\]", _expected_path(path).read_text()))
    assert documented, "docs/language.md lists no diagnostic codes"
    assert documented <= covered, f"codes without a golden case: {sorted(documented - covered)}"


def test_clean_cases_have_no_diagnostics() -> None:
    for path in CASES:
        if path.name.startswith("OK_"):
            assert _expected_path(path).read_text() == "\n", path.name


def _expected_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".flow").removesuffix(".ir.json") + ".txt")


def _language_doc() -> str:
    return (Path(__file__).parents[2] / "docs" / "language.md").read_text(encoding="utf-8")
