"""Did-you-mean: the closest known name by edit distance, within a budget for each text.

Inside `suggestion_budget()` (the pipeline opens one per text) the work is bounded by
`SUGGESTION_BUDGET` and a name asked about again against the same candidates gets the
answer it got before, for free; 100,000 unknown names cost what the budget allows, not
100,000 searches.  Outside one, every question is answered in full.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from flowc.dsl.limits import SUGGESTION_BUDGET


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A known name, lowered, and the letters it has (for a cheap lower bound on distance)."""

    name: str
    lowered: str
    letters: Counter[str]


#: Known names by length: a search looks only at lengths near the name's.
_Index = dict[int, list[_Candidate]]


def _index(candidates: Iterable[str]) -> _Index:
    index: _Index = {}
    for name in set(candidates):
        lowered = name.lower()
        index.setdefault(len(name), []).append(_Candidate(name, lowered, Counter(lowered)))
    return index


@dataclass(slots=True)
class _Budget:
    """The work the suggestions for one text may still do, and what they already know.

    Answers and indexes are keyed by the identity of the candidates, which each entry keeps
    alive so that the identity cannot be reused while the budget lives.
    """

    left: int
    answers: dict[tuple[str, int], tuple[Iterable[str], str | None]] = field(default_factory=dict)
    indexes: dict[int, tuple[Iterable[str], _Index]] = field(default_factory=dict)

    def index(self, candidates: Iterable[str]) -> _Index:
        """The candidates' index, built the first time they are asked about."""
        known = self.indexes.get(id(candidates))
        if known is None:
            index = _index(candidates)
            self.left -= sum(len(group) for group in index.values())
            known = self.indexes[id(candidates)] = (candidates, index)
        return known[1]


_budget: ContextVar[_Budget | None] = ContextVar("suggestion_budget", default=None)


@contextmanager
def suggestion_budget(units: int = SUGGESTION_BUDGET) -> Iterator[None]:
    """Bound the suggestions made inside the block to `units` of work, shared by them all."""
    token = _budget.set(_Budget(units))
    try:
        yield
    finally:
        _budget.reset(token)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, with a transposition counted as one edit."""
    if a == b:
        return 0
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate nearest to `name`, if it is near enough to be a likely typo.

    Near enough is within a third of the name's length; of equally near ones, the first in
    alphabetical order.  Inside `suggestion_budget()`: None once the budget is spent, and the
    same answer as before for a name asked about again against the same candidates.
    """
    budget = _budget.get()
    if budget is None:
        return _search(name, _index(candidates), None)
    key = (name, id(candidates))
    known = budget.answers.get(key)
    if known is not None:
        return known[1]
    if budget.left <= 0:
        return None
    budget.left -= 1  # the question itself, however few the candidates
    found = _search(name, budget.index(candidates), budget)
    budget.answers[key] = (candidates, found)
    return found


def _search(name: str, index: _Index, budget: _Budget | None) -> str | None:
    """The nearest candidate within the limit; None when the budget runs out on the way."""
    limit = max(1, len(name) // 3)
    lowered = name.lower()
    letters = Counter(lowered)
    # Lengths further apart than the limit cannot be near: edit distance is never less.
    near = [
        c for size in range(len(name) - limit, len(name) + limit + 1) for c in index.get(size, ())
    ]
    best: tuple[int, str] | None = None
    for candidate in sorted(near, key=lambda c: c.name):
        if budget is not None:
            budget.left -= 1 + len(name) + len(candidate.name)
        if _letters_apart(letters, candidate.letters) > limit:
            continue
        if budget is not None:
            budget.left -= len(name) * len(candidate.name)
            if budget.left < 0:
                return None  # a partial search could name a worse match than a full one
        distance = edit_distance(lowered, candidate.lowered)
        if distance <= limit and (best is None or distance < best[0]):
            best = (distance, candidate.name)
    return best[1] if best else None


def _letters_apart(a: Counter[str], b: Counter[str]) -> int:
    """A lower bound on the edit distance, and cheap: the letters one has and the other lacks.

    An insertion, deletion or substitution changes each count by at most one; a
    transposition changes neither.
    """
    return max(sum((a - b).values()), sum((b - a).values()))


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """`did you mean `x`?` or None."""
    match = closest(name, candidates)
    return f"did you mean `{match}`?" if match else None
