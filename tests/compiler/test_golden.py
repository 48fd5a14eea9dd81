"""Golden diagnostics: each `golden/*.flow` compiles to exactly the text in its `.txt` file.

Every diagnostic code has at least one case.  To write a new case's expected text, run
`FLOWC_UPDATE_GOLDEN=1 pytest tests/compiler/test_golden.py`: it writes the text of every
case whose output changed and fails that case, so nothing passes by being compared with
itself.  Read the diff (`git diff tests/compiler/golden`), commit it if it is right, and
run the tests again without the variable.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from flowc.compiler import check_ir, check_source
from flowc.compiler.render import render_text_all
from flowc.compiler.subflows import DirectoryFlows
from tests.conftest import fake_tools

GOLDEN = Path(__file__).parent / "golden"
#: The flows the cases' sub-flows (`flow NAME`) are found in, besides the cases themselves.
FLOWS = GOLDEN / "flows"
CASES = sorted([*GOLDEN.glob("*.flow"), *GOLDEN.glob("*.ir.json")])
#: Set to rewrite the expected text of the cases whose output changed (each then fails).
UPDATE = os.environ.get("FLOWC_UPDATE_GOLDEN") == "1"

#: Codes that a small golden file cannot trigger, and the test that covers each instead.
ELSEWHERE = {
    "E001": "tests/dsl/test_limits.py (a text over 1 MiB)",
    "E002": "tests/dsl/test_limits.py and tests/cli (text UTF-8 cannot hold)",
    "E307": "tests/compiler/test_limits.py (a condition of more than 10,000 operators)",
}


def render_case(path: Path) -> str:
    text = path.read_bytes().decode("utf-8")
    if path.name.endswith(".ir.json"):
        checked = check_ir(text, tools=fake_tools())
        return render_text_all(checked.diagnostics, None, path.name) + "\n"
    tools = fake_tools()
    # Relative folders, as a user gives them: messages name them, and the text is the same
    # wherever the checkout is.
    folders = [Path(os.path.relpath(folder)) for folder in (GOLDEN, FLOWS)]
    flows = DirectoryFlows(folders, tools, root=path.stem)
    checked = check_source(text, tools=tools, filename=path.name, flows=flows)
    return render_text_all(checked.diagnostics, text, path.name) + "\n"


def compare_golden(actual: str, expected_path: Path, *, update: bool) -> None:
    """Pass when `actual` is the reviewed text; in update mode write it instead, and fail."""
    expected = expected_path.read_text(encoding="utf-8") if expected_path.exists() else None
    if actual == expected:
        return
    if update:
        expected_path.write_text(actual, encoding="utf-8")
        pytest.fail(
            f"{expected_path.name} was rewritten with the new output: read the diff "
            f"(git diff {expected_path.parent.name}/{expected_path.name}), commit it if it is "
            "right, and run the tests again without FLOWC_UPDATE_GOLDEN",
            pytrace=False,
        )
    if expected is None:
        pytest.fail(
            f"{expected_path.name} does not exist: write it with FLOWC_UPDATE_GOLDEN=1 "
            "and review it",
            pytrace=False,
        )
    assert actual == expected


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_golden(path: Path) -> None:
    compare_golden(render_case(path), _expected_path(path), update=UPDATE)


def test_update_mode_writes_the_new_text_and_fails(tmp_path: Path) -> None:
    expected = tmp_path / "case.txt"
    expected.write_text("the reviewed text\n", encoding="utf-8")
    with pytest.raises(pytest.fail.Exception) as failed:
        compare_golden("the new output\n", expected, update=True)
    assert str(failed.value) == (
        "case.txt was rewritten with the new output: read the diff "
        f"(git diff {tmp_path.name}/case.txt), commit it if it is right, "
        "and run the tests again without FLOWC_UPDATE_GOLDEN"
    )
    assert expected.read_text(encoding="utf-8") == "the new output\n"
    compare_golden("the new output\n", expected, update=True)  # unchanged: a pass, no write


def test_without_update_mode_a_difference_fails_and_writes_nothing(tmp_path: Path) -> None:
    expected = tmp_path / "case.txt"
    expected.write_text("the reviewed text\n", encoding="utf-8")
    with pytest.raises(AssertionError):
        compare_golden("the new output\n", expected, update=False)
    assert expected.read_text(encoding="utf-8") == "the reviewed text\n"
    missing = tmp_path / "new.txt"
    with pytest.raises(pytest.fail.Exception) as failed:
        compare_golden("the new output\n", missing, update=False)
    assert str(failed.value) == (
        "new.txt does not exist: write it with FLOWC_UPDATE_GOLDEN=1 and review it"
    )
    assert not missing.exists()


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
