"""The graph checks: loops that never reach `end` (E401), unreachable, unused and dead ends."""

from __future__ import annotations

import pytest

from flowc.compiler import check_source

#: One diagnostic as these tests compare it: code, line, message, help.
Shown = tuple[str, int, str, str | None]


def diagnostics(text: str) -> list[Shown]:
    """Every diagnostic of `text`, in the order the compiler sorts them."""
    return [(d.code, d.span.line, d.message, d.help) for d in check_source(text).diagnostics]


def loop_error(line: int, loop: str, help: str) -> Shown:
    return ("E401", line, f"this loop never reaches `end`: {loop}", help)


def unreachable(line: int, name: str, start: str) -> Shown:
    return ("W501", line, f"node `{name}` can never be reached from `{start}`", None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A node that routes to itself.
        (
            "a -> a\n",
            [
                loop_error(
                    1,
                    "a -> a",
                    "give `a` a branch that can leave the loop, for example `a ? done -> end : a`",
                )
            ],
        ),
        # Entered from outside: the loop is the part that repeats, not the way in.
        (
            "a -> b\nb -> c\nc -> b\n",
            [
                loop_error(
                    2,
                    "b -> c -> b",
                    "give `c` a branch that can leave the loop, for example `c ? done -> end : b`",
                )
            ],
        ),
        # Closed by a branch whose targets all lead back in.
        (
            "a -> b\nb -> s\ns ? x -> a : b\n",
            [
                loop_error(
                    1,
                    "a -> b -> s -> a",
                    "make one of the targets of the branch on `s` lead to `end`",
                )
            ],
        ),
        # A node that can finish, written first, does not hide a trap written after it.
        (
            "ok -> end\nx -> y\ny -> x\n",
            [
                loop_error(
                    2,
                    "x -> y -> x",
                    "give `y` a branch that can leave the loop, for example `y ? done -> end : x`",
                ),
                unreachable(2, "x", "ok"),
                unreachable(2, "y", "ok"),  # a node is where it is first named
            ],
        ),
        # One loop entered from two places is reported once, and later traps still are.
        (
            "a -> c\nc -> d\nd -> c\nb -> c\ne -> f\nf -> e\n",
            [
                loop_error(
                    2,
                    "c -> d -> c",
                    "give `d` a branch that can leave the loop, for example `d ? done -> end : c`",
                ),
                unreachable(4, "b", "a"),
                loop_error(
                    5,
                    "e -> f -> e",
                    "give `f` a branch that can leave the loop, for example `f ? done -> end : e`",
                ),
                unreachable(5, "e", "a"),
                unreachable(5, "f", "a"),
            ],
        ),
    ],
)
def test_loops_that_never_reach_end(text: str, expected: list[Shown]) -> None:
    assert diagnostics(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # A branch arm that leaves the loop.
        "a -> b\nb ? done -> end : a\n",
        # A way out through another node that reaches `end`.
        "a -> b\nb ? done -> c : a\nc -> end\n",
        # A way out far from the loop's first node.
        "a -> b\nb -> c\nc ? x -> a : d\nd -> e\ne -> end\n",
    ],
)
def test_loops_with_a_way_out_are_fine(text: str) -> None:
    assert diagnostics(text) == []


def test_a_node_without_a_route_ends_the_run_so_a_loop_through_it_is_no_trap() -> None:
    assert diagnostics("a -> b\nb ? x -> a : c\n") == [
        ("W502", 2, "node `c` has no outgoing edge, so the run ends there",
         "write `c -> end` to say so"),
    ]  # fmt: skip


def test_unused_and_unreachable_nodes() -> None:
    text = "node lonely = t\na -> end\nb -> a\n"
    assert diagnostics(text) == [
        ("W503", 1, "node `lonely` is declared but never used",
         "route to it (`... -> lonely`) or remove the declaration"),
        unreachable(3, "b", "a"),
    ]  # fmt: skip


# -- error routes count as edges ----------------------------------------------------------


def test_an_error_route_reaches_its_target() -> None:
    text = "node a = t with on_error = b\na -> end\nb -> end\n"
    assert diagnostics(text) == []
    # Without the error route, `b` is unreachable.
    assert diagnostics("node a = t\na -> end\nb -> end\n") == [unreachable(3, "b", "a")]


def test_an_error_route_out_of_a_loop_is_a_way_to_end() -> None:
    # `a -> b -> a` alone is a trap (E401); a failing `b` leaves it.
    assert [d[0] for d in diagnostics("a -> b -> a\n")] == ["E401"]
    assert diagnostics("node b = t with on_error = end\na -> b -> a\n") == []
    assert diagnostics("node b = t with on_error = c\na -> b -> a\nc -> end\n") == []


def test_an_error_route_into_the_loop_does_not_free_it() -> None:
    text = "node b = t with on_error = a\na -> b -> a\n"
    assert [d[0] for d in diagnostics(text)] == ["E401"]


def test_the_shortest_run_may_take_an_error_route() -> None:
    # Through `fetch`'s error route a run ends after 1 step, or 2 through `b`'s.
    text = "set max_steps = 1\nnode fetch = t with on_error = end\nfetch -> b -> c -> end\n"
    assert diagnostics(text) == []
    text = "set max_steps = 2\nnode b = t with on_error = end\nfetch -> b -> c -> end\n"
    assert diagnostics(text) == []
    text = "set max_steps = 2\nfetch -> b -> c -> end\n"
    assert [d[0] for d in diagnostics(text)] == ["E402"]
