"""`flowc run FILE` -> the flow run in-process: a trace line per node, then the final state.

No database.  The trace goes to standard error as nodes finish; the final state goes to
standard output (`--json`: the whole result as JSON).  Exit 0 when the run succeeded, 1
when it failed (the error shown at its source line), 2 for usage or compile errors and
for an input that does not fit the flow's `state` declarations (each problem named), 3
when it stopped at a wait with no input to go on, 130 when Ctrl-C cancelled it (the state
and steps so far are printed all the same).  Ctrl-C cancels the run's task (asyncio's own
handling): an async tool is cancelled, a thread abandoned; a sync tool on the event loop
finishes first, unless Ctrl-C comes twice.

A run that reaches a wait node goes on with the next `--resume` input, or, when none is
left and standard input is a terminal, with a JSON object typed there (within the wait's
timeout: past it, the wait fails with `wait_timeout`, as on the server).  The input is
recorded as the wait's step and the run resumes after it, as the server resumes a run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import select
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowc.cli.compile import compile_file
from flowc.cli.errors import EXIT_ERRORS, EXIT_OK, EXIT_USAGE, CommandError
from flowc.cli.sources import Source, read_source
from flowc.cli.tool_loading import load_tools, tool_entries
from flowc.compiler.program import MAX_MAX_STEPS
from flowc.compiler.render import render_text
from flowc.dsl.diagnostics import WHOLE_TEXT, Span, error

if TYPE_CHECKING:
    from flowc.compiler.inputs import Inputs
    from flowc.compiler.ir import Flow
    from flowc.compiler.ir import Span as IrSpan
    from flowc.runtime import Event, RunResult, Step, WorkflowEngine
    from flowc.runtime.events import ChildEvent, RunEvent, WaitFor

#: Values longer than this are cut short in the human-readable final state.
SHOWN_VALUE = 300

#: The exit code of a run cancelled by Ctrl-C, as shells report a process that SIGINT ended.
EXIT_CANCELLED = 130
#: The exit code of a run that stopped at a wait with no input to go on.
EXIT_WAITING = 3


def run(args: argparse.Namespace) -> int:
    """Compile the file, build the initial state, run it, report."""
    tools = load_tools(tool_entries(args.tools, os.environ))
    initial = initial_state(args)
    given = [_json_object(text, f"--resume #{i}") for i, text in enumerate(args.resume or (), 1)]
    outcome = compile_file(args.file, tools, args.flows)
    if outcome is None:
        return EXIT_USAGE  # for `run`, a flow that does not compile is a usage error
    source, compiled = outcome
    flow = compiled.ir
    initial = checked_input(flow, initial)
    if args.max_steps is not None:
        settings = flow.settings.model_copy(update={"max_steps": args.max_steps})
        flow = flow.model_copy(update={"settings": settings})

    from flowc.runtime import WorkflowEngine

    progress = Progress(uuid.uuid4().hex, initial)
    engine = WorkflowEngine(flow)
    inputs = WaitInputs(engine.inputs, given)
    try:
        result = drive(engine, initial, progress, inputs)
    except KeyboardInterrupt:  # Ctrl-C: the run's task was cancelled
        result = progress.cancelled({node.name: node.span for node in flow.nodes})
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        print_state(result.state)
    if inputs.unused:
        count = len(inputs.unused)
        print(f"flowc: note: {count} --resume input{'s' * (count != 1)} left unused",
              file=sys.stderr)  # fmt: skip
    if result.waiting is not None:
        wait = result.waiting
        count = len(result.steps)
        print(f"run waits at node `{wait.node}` for `{wait.name}` after {count} "
              f"step{'s' * (count != 1)}, with no input to go on: give it with --resume JSON",
              file=sys.stderr)  # fmt: skip
        return EXIT_WAITING
    if result.status == "cancelled":
        count = len(result.steps)
        node = f" at node `{progress.node}`" if progress.node else ""
        print(f"run cancelled{node} after {count} step{'s' * (count != 1)}", file=sys.stderr)
        return EXIT_CANCELLED
    if result.error is not None:
        span = result.error.span
        where = (
            Span(span["line"], span["column"], span["end_line"], span["end_column"])
            if span
            else WHOLE_TEXT
        )
        message = f"run failed at node `{result.error.node}`: {result.error.message}"
        print(render_text(error(result.error.code, message, where), source.text, source.name),
              file=sys.stderr)  # fmt: skip
        return EXIT_ERRORS
    print(f"run succeeded in {len(result.steps)} steps", file=sys.stderr)
    return EXIT_OK


def drive(
    engine: WorkflowEngine, initial: dict[str, Any], progress: Progress, inputs: WaitInputs
) -> RunResult:
    """Run the flow; at each wait, record its input (or its timeout) as a step and go on.

    The result holds every step; a run left waiting has the status `waiting`.
    """
    from flowc.runtime import Resume, RunError, RunResult
    from flowc.runtime.waits import input_step, timed_out

    run_id, listener = progress.run_id, progress.trace
    result = asyncio.run(engine.run(initial_state=initial, run_id=run_id, listener=listener))
    steps = list(result.steps)
    while result.waiting is not None:
        wait, seq, since = result.waiting, len(steps) + 1, time.time()
        given = inputs.next(wait)
        if given is None:
            break
        if given is TIMED_OUT:
            outcome = timed_out(engine, wait, seq, since, time.time())
            if isinstance(outcome, RunError):
                return RunResult(run_id, "failed", result.state, steps, outcome)
            step = outcome
        else:
            step = input_step(wait, seq, given, since, time.time())
        progress.record(step)
        steps.append(step)
        resume = Resume(after=wait.node, seq=seq, failed=step.failed)
        state = {**result.state, **step.delta}
        result = asyncio.run(
            engine.run(initial_state=state, run_id=run_id, listener=listener, resume=resume)
        )
        steps += result.steps
    return dataclasses.replace(result, steps=steps)


#: What `WaitInputs.next` answers when the wait's timeout passed first.
TIMED_OUT: dict[str, Any] = {}


class WaitInputs:
    """Where the input of each wait comes from: `--resume`, in order, then the terminal."""

    def __init__(self, inputs: Inputs, given: Sequence[dict[str, Any]]) -> None:
        self.inputs = inputs
        self.unused = [self.checked(value, f"--resume #{i}") for i, value in enumerate(given, 1)]

    def checked(self, given: dict[str, Any], where: str) -> dict[str, Any]:
        """`given`, normalized; `CommandError` (exit 2) when it does not fit the declarations."""
        from flowc.runtime.waits import resume_problems

        problems = resume_problems(self.inputs, given)
        if problems:
            lines = "".join(f"\n  {problem.describe()}" for problem in problems)
            raise CommandError(f"{where} does not fit the flow's state declarations:{lines}")
        return self.inputs.normalize(given)

    def next(self, wait: WaitFor) -> dict[str, Any] | None:
        """The input of `wait`; None when there is none, `TIMED_OUT` past its timeout."""
        if self.unused:
            return self.unused.pop(0)
        if not sys.stdin.isatty():
            return None
        limit = "" if wait.timeout is None else f" (it times out in {wait.timeout:,g} s)"
        print(f"the run waits at node `{wait.node}` for `{wait.name}`{limit}: type its input, "
              "a JSON object", file=sys.stderr, flush=True)  # fmt: skip
        text = _read_object(wait.timeout)
        if text is None:
            return TIMED_OUT
        if not text.strip():
            return None  # the terminal's input ended (Ctrl-D)
        return self.checked(_json_object(text, f"the input of `{wait.node}`"), "the input")


def _read_object(timeout: float | None) -> str | None:
    """Lines from standard input until they make one JSON value, or it ends.

    None when `timeout` seconds pass first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    text = ""
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sys.stdin], [], [], left)[0]:
                return None
        line = sys.stdin.readline()
        text += line
        if not line or _complete(text):
            return text


def _complete(text: str) -> bool:
    """Whether `text` is a JSON value, or broken before its end (more lines cannot help)."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return exc.pos < len(text.rstrip())
    except ValueError:
        return True
    return True


class Progress:
    """A run as its events tell it: the trace on stderr, and what to report if it is cut short.

    A sub-flow's steps are traced where they run, named by the nodes that run them, joined
    by `SEPARATOR`: `review › analyze` is a step of `analyze` in the run of the node `review`.
    """  # noqa: RUF002

    #: Between the names of a sub-flow's step: the nodes that run it, outermost first.
    SEPARATOR = " \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} "

    def __init__(self, run_id: str, initial: dict[str, Any]) -> None:
        self.run_id = run_id
        self.state = dict(initial)
        self.steps: list[Step] = []
        self.node: str | None = None  # the node whose tool is running, if one is
        #: The sub-flow runs seen, by run id: the nodes that run them, outermost first.
        self.places: dict[str, tuple[str, ...]] = {}
        #: The same runs' steps' numbers begin with the steps that run them: `2.` for the
        #: child of step 2, `2.3.` for a grandchild.
        self.numbers: dict[str, str] = {}
        #: The step each run is in (its last `node_started`), by run id.
        self.current: dict[str, int] = {}

    def trace(self, event: RunEvent) -> None:
        """Print a line for each finished node and each failed attempt; keep the state."""
        if event.type == "child":
            self.child(event)
        elif event.type == "node_started":
            self.node = event.node
            self.current[event.run_id] = event.step
        elif event.type == "node_attempt_failed" and event.error is not None:
            self.attempt_failed(event, event.node or "")
        elif event.type == "node_finished":
            from flowc.runtime import Step
            from flowc.runtime.events import JOIN

            self.node = None
            delta = event.delta or {}
            branch = event.branch
            if branch is None or branch == JOIN:  # a branch's step, a map's call: not yet
                self.state = {**self.state, **delta}
            duration = event.duration_ms or 0
            started = event.at - duration / 1000
            failed = bool(event.failed)
            self.steps.append(
                Step(
                    event.step, event.node or "", delta, started, event.at, event.attempts or 1,
                    failed, branch,
                )
            )  # fmt: skip
            self.finished(event, event.node or "")

    def child(self, event: ChildEvent) -> None:
        """Trace a step of a sub-flow's run under the node that runs it (nothing is kept)."""
        inner, parent = event.event, event.parent_run_id
        place = (*self.places.get(parent, ()), event.parent_node)
        self.places.setdefault(inner.run_id, place)
        if inner.run_id not in self.numbers:
            step = self.current.get(parent)
            self.numbers[inner.run_id] = self.numbers.get(parent, "") + (
                f"{step}." if step is not None else ""
            )
        number = f"{self.numbers[inner.run_id]}{inner.step}"
        name = self.SEPARATOR.join((*place, inner.node or ""))
        if inner.type == "node_started":
            self.current[inner.run_id] = inner.step
        elif inner.type == "node_attempt_failed" and inner.error is not None:
            self.attempt_failed(inner, name, number)
        elif inner.type == "node_finished":
            self.finished(inner, name, number)

    @staticmethod
    def attempt_failed(event: Event, name: str, number: str | None = None) -> None:
        """The line of an attempt that failed (`number`: a sub-flow's step's, `2.1`)."""
        assert event.error is not None
        retry = "" if event.retry_in is None else f"; retrying in {event.retry_in:.2f} s"
        print(
            f"{number or event.step:>5}  {name:<16} attempt {event.attempt} failed: "
            f"{event.error.code}{retry}",
            file=sys.stderr,
            flush=True,
        )

    @staticmethod
    def finished(event: Event, name: str, number: str | None = None) -> None:
        """The line of a finished step: its number, node, time and the keys it changed.

        `number`: a sub-flow's step's, after the step that runs it (`2.1`).
        """
        keys = ", ".join(sorted(event.delta or {})) or "-"
        if event.failed:
            keys = "failed: error, on to its error route"
        if event.branch is not None:
            name += f" [{event.branch}]"  # where it ran: its branch, its item, or the join
        print(
            f"{number or event.step:>5}  {name:<16} {event.duration_ms or 0:9.2f} ms  {keys}",
            file=sys.stderr,
            flush=True,
        )

    def record(self, step: Step) -> None:
        """A wait's step, recorded here (not by the engine): kept, and traced like any."""
        self.state = {**self.state, **step.delta}
        self.steps.append(step)
        keys = "failed: error, on to its error route" if step.failed else ""
        keys = keys or ", ".join(sorted(step.delta)) or "-"
        print(f"{step.seq:>5}  {step.node:<16} {step.duration_ms:9.2f} ms  {keys}",
              file=sys.stderr, flush=True)  # fmt: skip

    def cancelled(self, spans: Mapping[str, IrSpan | None]) -> RunResult:
        """The result of the run cut short: its state and steps so far, and where it stopped.

        `spans` are the nodes' places in the source, for the error to point at.
        """
        from flowc.runtime import RunError, RunResult

        span = spans.get(self.node) if self.node else None
        error = RunError("cancelled", "the run was cancelled (Ctrl-C)", self.node, span)
        return RunResult(self.run_id, "cancelled", self.state, self.steps, error)


def initial_state(args: argparse.Namespace) -> dict[str, Any]:
    """`--input-file`, then `--input`, then `--code-file` (as `code`), merged in that order."""
    state: dict[str, Any] = {}
    if args.input_file is not None:
        state.update(_json_object(_read_text(args.input_file), f"`{args.input_file}`"))
    if args.input is not None:
        state.update(_json_object(args.input, "--input"))
    if args.code_file is not None:
        state["code"] = _read_text(args.code_file)
    if args.max_steps is not None and not 1 <= args.max_steps <= MAX_MAX_STEPS:
        raise CommandError(f"--max-steps must be from 1 to {MAX_MAX_STEPS:,}")
    return state


def checked_input(flow: Flow, initial: dict[str, Any]) -> dict[str, Any]:
    """The input with the defaults of the declared keys it leaves out.

    `CommandError` (exit 2) naming each way it does not fit the flow's `state` declarations.
    """
    from flowc.compiler.inputs import Inputs

    inputs = Inputs.of(flow)
    problems = inputs.problems(initial)
    if problems:
        lines = "".join(f"\n  {problem.describe()}" for problem in problems)
        raise CommandError(f"the input does not fit the flow's state declarations:{lines}")
    return inputs.with_defaults(initial)


def _read_text(path: str) -> str:
    source: Source = read_source(path)
    if source.problem is not None:
        raise CommandError(f"cannot read `{path}`: {source.problem.message}")
    return source.text


def _json_object(text: str, where: str) -> dict[str, Any]:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not valid JSON")

    try:
        value = json.loads(text, parse_constant=refuse)
    except ValueError as exc:
        raise CommandError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise CommandError(f"{where} is nested too deeply") from None
    if not isinstance(value, dict):
        raise CommandError(f'{where} must be a JSON object, like {{"code": "..."}}')
    return value


def print_state(state: dict[str, Any]) -> None:
    """The final state, one key per line, long values cut short."""
    for key in sorted(state):
        text = json.dumps(state[key], ensure_ascii=False)
        if len(text) > SHOWN_VALUE:
            text = f"{text[: SHOWN_VALUE - 1]}… ({len(text):,} characters)"
        print(f"{key}: {text}")
