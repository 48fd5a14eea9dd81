"""Did-you-mean: the closest known name by edit distance."""

from __future__ import annotations

from collections.abc import Iterable


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
    """The candidate nearest to `name`, if it is near enough to be a likely typo."""
    best: tuple[int, str] | None = None
    limit = max(1, len(name) // 3)
    lowered = name.lower()
    for candidate in sorted(set(candidates)):
        if abs(len(candidate) - len(name)) > limit:
            continue  # too far apart in length alone; and edit distance is quadratic
        distance = edit_distance(lowered, candidate.lower())
        if distance <= limit and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """`did you mean `x`?` or None."""
    match = closest(name, candidates)
    return f"did you mean `{match}`?" if match else None
