"""The checked flow as plain frozen dataclasses: what every semantic check reads.

Lowering builds a `Program` from the AST, and an IR document is turned into one too, so
the same checks run on DSL text and on IR JSON.  Conditions stay `dsl.ast` expressions.
The pydantic IR (`compiler.ir`) is built from a `Program` only when it is asked for, which
keeps `flowc check` free of pydantic's import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

from flowc.compiler.types import FlowType
from flowc.dsl import ast
from flowc.dsl.diagnostics import WHOLE_TEXT, Span

#: The pseudo-nodes: where a run starts and where it ends.
START = "start"
END = "end"

#: Settings and their defaults (`set NAME = VALUE`).
DEFAULT_MAX_STEPS = 1000
MAX_MAX_STEPS = 1_000_000
#: `set max_parallel`: how many parallel branches (or map elements) of a run run at once.
DEFAULT_MAX_PARALLEL = 8
MAX_MAX_PARALLEL = 1000

#: Node policies (`with timeout = 5, retries = 3, backoff = 0.5`), whose flow-wide values
#: are settings of the same names.  A timeout is in seconds (None: none); `retries` is how
#: many times a failed attempt is tried again; `backoff` the seconds before the first retry
#: (doubled for each next one).
POLICIES = ast.POLICY_NAMES
MAX_TIMEOUT = 7 * 24 * 3600
MAX_RETRIES = 100
MAX_BACKOFF = 3600
DEFAULT_RETRIES = 0
DEFAULT_BACKOFF = 1.0


@dataclass(frozen=True, slots=True)
class Policy:
    """A node's own policies; None where the node takes the flow's setting."""

    timeout: float | None = None
    retries: int | None = None
    backoff: float | None = None
    #: The error route: the node (or `end`) the run goes to when this node's step fails
    #: after its retries, with `error` in the state; None: a failure fails the run.
    on_error: str | None = None
    on_error_span: Span = field(default=WHOLE_TEXT, compare=False)


@dataclass(frozen=True, slots=True)
class StateField:
    """A declared state key: `state NAME: TYPE (= DEFAULT)?`.

    Without a default the key is `required`: an input every run must be given.
    """

    name: str
    type: FlowType
    default: ast.Value = None
    required: bool = True
    span: Span = WHOLE_TEXT
    type_span: Span = WHOLE_TEXT
    #: `by NAME`: how the writes of parallel branches are merged (`compiler.reducers`).
    reducer: str | None = None


#: The built-in tool of a node that waits for a person or an event: `wait("approval")`.
WAIT = "wait"
#: The longest a wait may wait, in seconds (a year).
MAX_WAIT = 366 * 24 * 3600


@dataclass(frozen=True, slots=True)
class MapSpec:
    """`for ITEM in KEY:`: the node runs its tool once per item of the list `KEY`.

    Each call sees the state with the item under `ITEM`; what the calls return is collected,
    in the list's order, into the key named after the node.
    """

    item: str
    over: str
    span: Span = WHOLE_TEXT
    over_span: Span = WHOLE_TEXT


@dataclass(frozen=True, slots=True)
class WaitSpec:
    """`wait("approval", timeout = 86400)`: the run stops until it is resumed with input.

    `timeout` seconds (None: it waits as long as it takes) after which the node fails with
    `wait_timeout` (or takes its error route).
    """

    name: str
    timeout: float | None = None


#: The tool of a node that runs another flow as one node: `node review = flow code_review`.
SUBFLOW = "flow"
#: How deep sub-flows may nest: a flow, its sub-flow, that one's, ... (8 flows in all).
MAX_FLOW_DEPTH = 8
#: How many nodes the sub-flows a flow runs may hold in all, theirs included, each time
#: one is run counted (their IR is held in the flow's, once per sub-flow node).
MAX_HELD_NODES = 10_000


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """`flow NAME` (or `flow NAME(graph_id = "...")`): the node runs the flow `NAME`.

    `graph_id` pins a stored definition (the server's); `span` is the flow's name's.
    `child` is the flow found for it (a `compiler.ir.Flow`), None until it is resolved.
    """

    name: str
    graph_id: str | None = None
    span: Span = WHOLE_TEXT
    child: Any = None


@dataclass(frozen=True, slots=True)
class Node:
    """A node: the tool it runs, the static keyword arguments it passes, its policies.

    A map node (`map`) runs its tool once per item of a list; a wait node (`wait`) runs no
    tool: the run waits there for input; a sub-flow node (`flow`) runs another flow.
    """

    name: str
    tool: str
    args: dict[str, ast.Value] = field(default_factory=dict)
    span: Span = WHOLE_TEXT
    tool_span: Span = WHOLE_TEXT
    arg_spans: dict[str, Span] = field(default_factory=dict)
    declared: bool = False  # True when a `node` statement names it
    policy: Policy | None = None  # None when the declaration has no `with`
    map: MapSpec | None = None
    wait: WaitSpec | None = None
    flow: FlowSpec | None = None
    #: True when the declaration gives a value without a name (E116, or a wait's name).
    positional: bool = False


@dataclass(frozen=True, slots=True)
class Goto:
    """A plain edge to `target`."""

    target: str
    span: Span = WHOLE_TEXT
    target_span: Span = WHOLE_TEXT


@dataclass(frozen=True, slots=True)
class Arm:
    """`condition -> target`: taken when the condition is the first true one."""

    condition: ast.Expr
    target: str
    span: Span = WHOLE_TEXT
    target_span: Span = WHOLE_TEXT


@dataclass(frozen=True, slots=True)
class Branch:
    """Ordered arms, then `otherwise` when no condition holds."""

    arms: tuple[Arm, ...]
    otherwise: str
    span: Span = WHOLE_TEXT
    otherwise_span: Span = WHOLE_TEXT

    @property
    def targets(self) -> tuple[str, ...]:
        """Every target, arms first, the else last."""
        return (*(arm.target for arm in self.arms), self.otherwise)


@dataclass(frozen=True, slots=True)
class Parallel:
    """`a -> [b -> b2, c] -> d`: after `a`, its branches run at once, then `join` runs once.

    Each branch is a chain of nodes that run one after the other; a node is in one branch
    at most and has no route of its own (`Program.branch_of`).
    """

    branches: tuple[tuple[str, ...], ...]
    join: str
    span: Span = WHOLE_TEXT
    join_span: Span = WHOLE_TEXT

    @property
    def targets(self) -> tuple[str, ...]:
        """Where the run goes after the fork: the first node of each branch."""
        return tuple(branch[0] for branch in self.branches)


Route: TypeAlias = Goto | Branch | Parallel


@dataclass(frozen=True, slots=True)
class BranchPlace:
    """Where a node of a parallel branch is: the fork's node, the branch's index, its next."""

    fork: str
    index: int
    next: str  # the next node of the branch, or the join after its last
    last: bool


@dataclass(frozen=True, slots=True)
class Program:
    """A whole flow: nodes in order of first mention, and at most one route per node."""

    name: str | None
    start: str
    nodes: dict[str, Node]
    routes: dict[str, Route]
    max_steps: int = DEFAULT_MAX_STEPS
    start_span: Span = WHOLE_TEXT
    timeout: float | None = None
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    source_hash: str | None = None
    #: Nodes that some route statement mentions (the rest were only declared).
    mentioned: frozenset[str] = frozenset()
    #: The declared state keys, in the order written; empty for an untyped flow.
    state: dict[str, StateField] = field(default_factory=dict)
    #: The targets of routing rules refused as a node's second one (E102), by node: the
    #: graph checks count them, so that the conflict is reported and nothing that follows.
    rejected: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Where `set max_steps = N` is written (the whole text when it is not).
    max_steps_span: Span = WHOLE_TEXT
    #: The nodes of parallel branches: the fork, the branch, and what follows each.
    branch_of: dict[str, BranchPlace] = field(default_factory=dict)
    #: `set max_parallel = N`: how many branches (or map elements) run at once; None:
    #: the default.
    max_parallel: int | None = None

    def route_targets(self, name: str) -> tuple[str, ...]:
        """Where a run goes after `name`'s step succeeds; empty when the run ends there."""
        route = self.routes.get(name)
        if route is None:
            place = self.branch_of.get(name)
            return () if place is None else (place.next,)
        return (route.target,) if isinstance(route, Goto) else route.targets

    def error_route(self, name: str) -> str | None:
        """Where a run goes when `name`'s step fails (`with on_error = ...`); None: it fails."""
        node = self.nodes.get(name)
        return None if node is None or node.policy is None else node.policy.on_error

    def successors(self, name: str) -> tuple[str, ...]:
        """Where a run can go after `name`: its route's targets, then its error route.

        Empty when every run ends there; a node without a route ends the run when its step
        succeeds, even when it has an error route (`ends_at`).
        """
        targets = self.route_targets(name)
        on_error = self.error_route(name)
        return targets if on_error is None else (*targets, on_error)

    def ends_at(self, name: str) -> bool:
        """True when a run can end at `name`.

        It has no route (and is in no parallel branch), or its route or error route leads
        to `end`.
        """
        return (
            (name not in self.routes and name not in self.branch_of)
            or END in self.route_targets(name)
            or self.error_route(name) == END
        )
