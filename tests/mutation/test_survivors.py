"""The survivors check of `make mutate`: how it reads the equivalents list and mutmut's diffs."""

from __future__ import annotations

import pytest

from tests.mutation.survivors import (
    EQUIVALENT,
    function_of,
    main,
    mutated_code,
    read_equivalents,
)

DIFF = """\
# flowc.compiler.graph.x__traps__mutmut_27: survived
--- flowc/compiler/graph.py
+++ flowc/compiler/graph.py
@@ -19,7 +19,7 @@
     for name in program.routes:
         if name in can_finish or name in done:
-            continue
+            break
"""


def test_an_entry_is_function_code_and_reason() -> None:
    text = (
        "# a comment\n"
        "\n"
        "flowc.dsl.lexer.x__scan_order :: return None :: a reason\n"
        "flowc.compiler.graph.x__traps ::   break   :: another reason  \n"
    )
    assert read_equivalents(text) == {
        ("flowc.dsl.lexer.x__scan_order", "return None"): "a reason",
        ("flowc.compiler.graph.x__traps", "break"): "another reason",
    }


@pytest.mark.parametrize(
    "line",
    [
        "flowc.compiler.graph.x__traps :: break",
        "flowc.compiler.graph.x__traps :: break ::",
        "flowc.compiler.graph.x__traps :: break :: why :: more",
    ],
)
def test_a_malformed_entry_names_its_line(line: str) -> None:
    with pytest.raises(SystemExit) as caught:
        read_equivalents(f"# header\n{line}\n", "equivalent.txt")
    assert caught.value.code == ("equivalent.txt:2: expected `function :: mutated code :: reason`")


def test_a_mutant_is_known_by_its_function_and_code() -> None:
    assert function_of("flowc.dsl.lexer.xǁFlowLexerǁlex__mutmut_17") == (
        "flowc.dsl.lexer.xǁFlowLexerǁlex"
    )
    assert mutated_code(DIFF) == "break"
    removal = "--- a.py\n+++ a.py\n@@ -1,2 +1,1 @@\n     f(\n-        x,\n     )\n"
    assert mutated_code(removal) == "- x,"


def test_the_equivalents_list_names_functions_of_the_safety_core() -> None:
    core = ("flowc.runtime.conditions.", "flowc.compiler.graph.", "flowc.dsl.lexer.")
    for function, _ in read_equivalents(EQUIVALENT.read_text(encoding="utf-8")):
        assert function.startswith(core), function


def test_no_results_at_all_is_a_pass_only_with_no_stale_entries(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("tests.mutation.survivors.uncaught", dict)
    entries = read_equivalents(EQUIVALENT.read_text(encoding="utf-8"))
    assert main() == (1 if entries else 0)
    assert (
        capsys.readouterr().out.splitlines()[-1].endswith("0 reviewed equivalent mutant(s) survive")
    )
