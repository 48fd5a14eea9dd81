"""Did-you-mean: the same answers as a plain search, within a budget for each text."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowc.compiler import check_source, suggestions
from flowc.compiler.suggestions import closest, edit_distance, suggestion_budget
from flowc.dsl.limits import SUGGESTION_BUDGET
from tests.conftest import fake_tools


def plain_closest(name: str, candidates: list[str]) -> str | None:
    """The search without budget, index or lower bound: every candidate, in order."""
    best: tuple[int, str] | None = None
    limit = max(1, len(name) // 3)
    for candidate in sorted(set(candidates)):
        if abs(len(candidate) - len(name)) > limit:
            continue
        distance = edit_distance(name.lower(), candidate.lower())
        if distance <= limit and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best else None


names = st.text(alphabet="abcdeAB_", min_size=1, max_size=9)


@given(names, st.lists(names, max_size=12))
def test_the_answer_is_the_plain_searchs(name: str, candidates: list[str]) -> None:
    assert closest(name, candidates) == plain_closest(name, candidates)
    with suggestion_budget():
        assert closest(name, candidates) == plain_closest(name, candidates)


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("analyse_syntax", "analyze_syntax"),
        ("scroe", "score"),  # a transposition is one edit
        ("SCORE", "score"),
        ("refine_codes", "refine_code"),
        ("x", None),
        ("notify_everyone", None),
    ],
)
def test_typos_find_their_tool(name: str, found: str | None) -> None:
    assert closest(name, fake_tools()) == found


class CountedCells:
    """`edit_distance`, counting the cells of the tables it fills."""

    def __init__(self) -> None:
        self.cells = 0

    def __call__(self, a: str, b: str) -> int:
        self.cells += len(a) * len(b)
        return edit_distance(a, b)


def anagrams(word: str, count: int) -> list[str]:
    """`count` different orders of the letters of `word`: near it in letters, far in edits."""
    found: dict[str, None] = {}
    for letters in itertools.permutations(word):
        found["".join(letters)] = None
        if len(found) == count:
            break
    return list(found)


def test_a_budget_bounds_the_work_and_then_no_more_is_suggested(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted = CountedCells()
    monkeypatch.setattr(suggestions, "edit_distance", counted)
    tools = fake_tools()
    with suggestion_budget(10_000):
        assert closest("analyse_syntax", tools) == "analyze_syntax"
        for name in anagrams("analyzesyntax", 500):
            closest(name, tools)
        assert counted.cells <= 10_000
        assert closest("refine_cod", tools) is None  # spent: a new name gets no answer
        assert closest("analyse_syntax", tools) == "analyze_syntax"  # asked before


def test_each_text_has_a_budget_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    counted = CountedCells()
    monkeypatch.setattr(suggestions, "edit_distance", counted)
    # 8,000 unknown nodes whose letters are a tool's: each costs a full edit distance.
    chain = " -> ".join(anagrams("analyzesyntax", 8_000))
    text = f"node first = analyse_syntax\nfirst -> {chain} -> end\n"
    for _ in range(2):
        counted.cells = 0
        helps = {d.help for d in check_source(text, tools=fake_tools()).diagnostics}
        assert "did you mean `analyze_syntax`?" in helps
        assert counted.cells <= SUGGESTION_BUDGET
        assert counted.cells > SUGGESTION_BUDGET // 2  # the budget, not the names, ran out
